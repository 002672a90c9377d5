"""Conversation state over turns on the real small index (no LLM: templated replies), and dialogue
understanding that comes from the catalog: MovieLens genres and Last.fm tags alike."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.assemble import Agent, build_agent, index_dataset
from agent.conversations import ConversationsConfig, open_conversation_store
from agent.dialogue import ConversationAgent
from agent.events import DeltaEvent, DoneEvent, ItemsEvent
from agent.settings import Settings
from conftest import make_settings
from core.errors import ConversationNotFound
from index.embedder import Embedder


def _dialogue(agent: Agent, database: Path | None = None) -> ConversationAgent:
    """A conversation agent over the small index; its conversations in `database` (SQLite) if given,
    else in the settings' store."""
    store = open_conversation_store(ConversationsConfig(url=f"sqlite:///{database}"), agent.namespace) \
        if database else None
    return build_agent(agent.settings, llm=None, index=agent.index, encoder=agent.encoder,
                       conversations=store).conversations


def test_constraints_titles_and_feedback(small_agent: Agent, tmp_path: Path) -> None:
    dialogue = _dialogue(small_agent, tmp_path / "conversations.sqlite3")
    state = dialogue.create()
    first = dialogue.respond(state.id, "I loved The Matrix and Toy Story. Something funny from the 90s, nothing scary.")
    state = dialogue.store.get(state.id)
    titles = {small_agent.index.entries[i].title for i in state.liked}
    assert {"Matrix, The (1999)", "Toy Story (1995)"} <= titles
    assert "Comedy" in state.include.get("genres", []) and "Horror" in state.exclude.get("genres", [])
    assert (state.year_min, state.year_max) == (1990, 1999)
    assert len(first.items) == 5
    for item in first.items:
        assert "Comedy" in item.attributes["genres"] and "Horror" not in item.attributes["genres"]
        assert 1990 <= item.attributes["year"] <= 1999
        assert item.id not in state.liked

    disliked = first.items[0].id
    dialogue.feedback(state.id, disliked, "dislike")
    for _ in range(2):
        again = dialogue.respond(state.id, "More like that please.")
        assert disliked not in {i.id for i in again.items}

    restarted = _dialogue(small_agent, tmp_path / "conversations.sqlite3")
    kept = restarted.store.get(state.id)
    assert disliked in kept.disliked and len(kept.turns) == 6


def test_known_user_and_isolation(small_agent: Agent) -> None:
    dialogue = _dialogue(small_agent)
    one, two = dialogue.create(user="1"), dialogue.create()
    dialogue.respond(one.id, "No horror please.")
    assert dialogue.store.get(two.id).exclude == {}
    seen = set(small_agent.index.user_history("1")[0])
    reply = dialogue.respond(one.id, "What else?")
    assert not seen & {i.id for i in reply.items}
    dialogue.delete(two.id)
    with pytest.raises(ConversationNotFound):
        dialogue.store.get(two.id)


def test_stream_events(small_agent: Agent) -> None:
    dialogue = _dialogue(small_agent)
    state = dialogue.create()
    events = list(dialogue.stream(state.id, "An animated movie for kids"))
    assert isinstance(events[0], ItemsEvent) and isinstance(events[-1], DoneEvent)
    assert "".join(e.text for e in events if isinstance(e, DeltaEvent)) == events[-1].response.reply


def test_words_inside_titles_are_not_constraints(small_agent: Agent) -> None:
    """"Star Wars" names a movie here, not the War genre."""
    dialogue = _dialogue(small_agent)
    state = dialogue.create()
    dialogue.respond(state.id, "I loved Star Wars and Toy Story. Something similar please")
    state = dialogue.store.get(state.id)
    assert state.include == {} and "1" in state.liked


def test_concurrent_messages_to_one_conversation_are_serialised(small_agent: Agent) -> None:
    dialogue = _dialogue(small_agent)
    state = dialogue.create()
    threads = [threading.Thread(target=dialogue.respond, args=(state.id, f"message {n}")) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    roles = "".join(t.role[0].upper() for t in dialogue.store.get(state.id).turns)
    assert roles == "UA" * 8, roles  # never UUUUUUUUAAAAAAAA


@pytest.fixture(scope="module")
def lastfm_agent(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Agent:
    from index.loaders import load_dataset

    settings: Settings = make_settings(small_data_dir, tmp_path_factory.mktemp("lastfm"), dataset="music-small")
    index_dataset(settings, load_dataset("music-small", small_data_dir), embedder, progress=False)
    return build_agent(settings, llm=None, embedder=embedder)


@pytest.mark.slow  # the lastfm_agent index: 1,500 artists embedded, about 35 CPU seconds
def test_music_catalog_constraints_come_from_its_tags(lastfm_agent: Agent) -> None:
    dialogue = lastfm_agent.conversations
    state = dialogue.create()
    reply = dialogue.respond(state.id, "Something like Radiohead but no metal")
    state = dialogue.store.get(state.id)
    radiohead = next(i for i, e in lastfm_agent.index.entries.items() if e.title == "Radiohead")
    assert radiohead in state.mentioned
    assert state.exclude.get("tags") == ["metal"] and "genres" not in state.include
    assert len(reply.items) == 5
    for item in reply.items:
        tags = item.attributes.get("tags", [])
        assert not any("metal" in tag.lower().split() for tag in tags), (item.title, tags)
    assert reply.items[0].id != radiohead


@pytest.mark.slow  # the lastfm_agent index
def test_movie_words_constrain_nothing_on_a_music_catalog(lastfm_agent: Agent) -> None:
    """Movie genres are no attribute of this catalog: whatever the words match are its own tag values,
    so the filter never rules out every item."""
    dialogue = lastfm_agent.conversations
    state = dialogue.create()
    reply = dialogue.respond(state.id, "A romantic comedy with some action")
    constraints = dialogue.store.get(state.id).include
    assert set(constraints) <= {"tags"}
    catalog_tags = {t for e in lastfm_agent.index.entries.values() for t in e.attributes.get("tags", [])}
    assert set(constraints.get("tags", [])) <= catalog_tags
    assert len(reply.items) == 5


def test_warm_loads_what_the_first_turns_would(small_index: Settings, embedder: Embedder, tmp_path: Path) -> None:
    """A fresh agent loads the encoder, the text vectors and the constraint values' embeddings on the way of
    its first turns; warm() does it before, and the turns then reuse what it loaded."""
    agent = build_agent(small_index, llm=None, embedder=embedder,
                        conversations=open_conversation_store(
                            ConversationsConfig(url=f"sqlite:///{tmp_path / 'c.sqlite3'}"), "movies-small"))
    dialogue = agent.conversations
    assert "text_vectors" not in agent.index.__dict__ and "_value_vectors" not in dialogue.vocabulary.__dict__
    assert agent.warm() > 0
    vectors, values = agent.index.__dict__["text_vectors"], dialogue.vocabulary.__dict__["_value_vectors"]
    assert len(vectors) == len(agent.index.entries) and len(values[0]) > 10
    state = dialogue.create()
    reply = dialogue.respond(state.id, "Something like Toy Story, but spooky")  # a title and an embedded phrase
    assert reply.items
    assert agent.index.__dict__["text_vectors"] is vectors and dialogue.vocabulary.__dict__["_value_vectors"] is values
