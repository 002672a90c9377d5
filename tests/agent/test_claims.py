"""Reply sentences state only what the data holds: the claim check on hand-made facts, the grounding that
drops false sentences, and the reply written from evidence (acknowledgment, distinct frames) on a real index."""

from __future__ import annotations

from agent.assemble import Agent
from agent.claims import ClaimChecker, ItemFacts, content_free, frame, strip_titles
from agent.compose import FRAMES, acknowledgment, constraints_of, item_sentences, template_reply
from agent.events import Recommendation, TurnRequest
from agent.respond import Grounding

CHECKER = ClaimChecker(["Comedy", "Animation", "Horror", "Thriller", "Crime", "Drama", "Children", "Sci-Fi"])
TOY = ItemFacts("Toy Story (1995)", frozenset({"comedy", "animation", "children"}), 1995, "very popular")
HEAT = ItemFacts("Heat (1995)", frozenset({"crime", "thriller", "action"}), 1995, "popular",
                 own_titles=("The Town (2010)",))
SHOWN = {"A": "Toy Story (1995)", "B": "Heat (1995)"}


def grounding() -> Grounding:
    return Grounding(dict(SHOWN), [*SHOWN.values(), "Town, The (2010)", "Matrix, The (1999)"],
                     evidence_titles=["Town, The (2010)"], facts={"A": TOY, "B": HEAT}, checker=CHECKER,
                     noun_words=("movie", "movies"))


def test_values_years_and_popularity_are_checked_on_the_cited_item() -> None:
    g = grounding()
    assert g.problem("[A] is a funny animated movie.") is None
    assert "horror" in str(g.problem("[A] is a scary movie."))
    assert "thriller" in str(g.problem("[A] is a thriller."))
    assert g.problem("[B] has no Comedy in it, and it is a thriller.") is None
    assert g.problem("[A] is Horror or Comedy.") is None and g.problem("[A] is Horror and Comedy.") is not None
    assert g.problem("[B] is Crime, Drama or Horror.") is None and g.problem("[B] is Drama or Horror.") is not None
    assert "not 'comedy'" in str(g.problem("[A] is nothing like a comedy."))
    assert "1997" in str(g.problem("[A] came out in 1997."))
    assert "1980s" in str(g.problem("[B] is a crime movie from the 80s."))
    assert g.problem("[B] is a crime movie from the 90s.") is None
    assert g.problem("[A] is one of the most popular movies here.") is None
    assert "niche" in str(g.problem("[B] is a lesser-known crime movie."))


def test_words_the_evidence_cannot_carry_are_refused() -> None:
    g = grounding()
    for sentence in ("[A] is a dark side.", "[A] is a monster movie.", "[B] is an acclaimed masterpiece.",
                     "[B] is gripping and tense."):
        assert "evidence does not carry" in str(g.problem(sentence)), sentence


def test_titles_and_relations_must_be_the_users_own() -> None:
    g = grounding()
    assert g.problem("People who liked The Town (2010) also liked [B].") is None
    assert "title" in str(g.problem("People who liked The Town (2010) also liked [A]."))  # not in A's evidence
    assert "another recommendation" in str(g.problem("Fans of [A] will like [B]."))
    assert g.problem("[B] is a favourite among fans of Toy Story.") is not None  # another recommendation
    assert g.problem("People who liked The Matrix (1999) also liked [B].") is not None
    assert "you liked" in str(g.problem("If you liked [A], here is a Comedy."))  # A is a recommendation
    assert g.problem("If you liked The Town (2010), [B] is one its fans liked too.") is None


def test_content_free_and_repeated_frames_are_refused() -> None:
    g = grounding()
    assert content_free("[A] is a good movie to try.", list(SHOWN.values()), CHECKER, ("movie",))
    assert g.problem("[A] is a good movie to try.") == "says nothing about the item"
    assert g.accept("[A] is a Comedy movie.")
    assert frame("[B] is a Crime movie.", list(SHOWN.values()), CHECKER) == frame("[A] is a Comedy movie.",
                                                                                 list(SHOWN.values()), CHECKER)
    assert g.problem("[B] is a Crime movie.") == "uses another item's sentence frame"
    assert g.problem("[B] is a Crime and Thriller movie, and a popular one here.") is None


def _item(item_id: str, title: str, genres: list[str], year: int, evidence: list[str] = ()) -> Recommendation:
    return Recommendation(id=item_id, title=title, score=1.0, reason="", evidence=list(evidence),
                          attributes={"genres": genres, "year": year})


def test_the_acknowledgment_names_only_what_every_item_meets() -> None:
    items = [_item("1", "Toy Story (1995)", ["Animation", "Comedy"], 1995),
             _item("2", "Up (2009)", ["Animation", "Comedy", "Adventure"], 2009)]
    filters = {"genres": {"$all": ["Animation", "Comedy"], "$nin": ["Horror"]}, "year": {"$lte": 2010}}
    ack = str(acknowledgment(items, filters, "movie"))
    assert ack.startswith(("Two movies ", "Here are two movies ", "I found two movies ")), ack
    assert ack.endswith(" movies that are Animation and Comedy, none of them Horror, from 2010 or earlier:"), ack
    assert acknowledgment(items, {"genres": {"$all": ["Adventure"]}}, "movie") is None  # Toy Story is not
    assert str(acknowledgment(items, {"genres": {"$in": ["Drama", "Comedy"]}, "year": {"$gte": 1990, "$lt": 2011}},
                              "movie")).endswith("movies that are Drama or Comedy, from 1990 to 2010:")
    assert acknowledgment(items, None, "movie") is None
    assert str(acknowledgment(items, {"genres": {"$nin": ["Horror"]}}, "movie")).endswith(
        " movies, none of them Horror:")
    assert constraints_of({"year": {"$gt": 2010}})[0].low == 2011


def test_template_replies_use_a_new_frame_for_every_item(small_agent: Agent) -> None:
    index = small_agent.index
    request = TurnRequest(history=("1", "2355", "3114"), k=8, filters={"genres": {"$all": ["Comedy"]}})
    response = small_agent.pipeline.recommend(request)
    assert response.reply_by == "template" and len(response.items) == 8
    reply = response.reply
    assert reply.split(":")[0] in ("Eight movies that are Comedy", "Here are eight movies that are Comedy",
                                   "I found eight movies that are Comedy"), reply
    sentences = item_sentences(index, response.items, acknowledged=True)
    frames = [frame(s, [i.title for i in response.items], CHECKER) for _, s in sentences]
    assert len(set(frames)) == len(frames), frames
    checker = ClaimChecker.for_index(index)
    for item, (_, sentence) in zip(response.items, sentences, strict=True):
        facts = ItemFacts.of(index, item)
        text = strip_titles(sentence, [item.title, *facts.own_titles])
        assert checker.problem(text, [facts], ("movie", "movies")) is None, sentence
        assert not content_free(sentence, [item.title], checker, ("movie",), facts.own_titles), sentence
    assert "Matrix, The" not in reply and template_reply(index, []).startswith("I found no movie")
    assert len(FRAMES) >= 25
