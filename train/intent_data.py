"""Training examples for the intent reader: a message (and the items shown before it) -> the JSON draft.

Two sources, both from what the project has and none from the evaluation cases:
- `generated`: messages composed from this module's own phrase lists over the catalog's titles (the popular
  ones, written as people write them: without the year, lower case, a typo), its attribute values and the mood
  words the catalog's vocabulary maps onto them, years and decades, MovieLens tags as free words to search by,
  orderings of several wishes in one message, corrections and references to the items shown. A phrase is used
  only where the catalog's own vocabulary grounds it to the value it stands for, so the model learns to copy
  words the grounding understands.
- `redial`: seekers' messages from ReDial's training dialogues with the movies they name and the seekers' own
  answers about them (`initiatorQuestions`: liked, disliked, seen).
Every message is checked against every evaluation case's messages (`eval/cases/intents*.jsonl`): a message
equal to one, or containing one of four words or more, is left out.
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.assemble import Agent
from agent.intent import RulesReader
from agent.intent_llm import IntentDraft, catalog_values, draft_target, intent_prompt
from agent.understanding import key
from core.titles import natural_title as natural_title_with_year
from eval.intents import read_all_cases
from prompts.loader import PromptTemplate
from train.jsonl import read_examples, write_examples
from train.reply_data import natural_title, redial_dialogues, redial_to_catalog

INTENT_DATA_VERSION = 3  # part of the cached examples' key: raise it when the examples this module makes change
_MENTION = re.compile(r"@(\d+)")
_YEARISH = re.compile(r"\b(?:1[89]\d\d|20\d\d|'?\d0s|newer|older|recent|latest|classic|old)\b", re.IGNORECASE)


@dataclass(frozen=True)
class IntentExample:
    prompt: str
    target: str  # starts with a space: it continues the prompt's "JSON:"
    source: str  # generated or redial


# Words for each value, as people write them; a word is used only where the catalog's vocabulary grounds it.
VALUE_WORDS: dict[str, tuple[str, ...]] = {
    "Comedy": ("comedy", "comedies", "funny", "hilarious", "funnier", "something to laugh at"),
    "Horror": ("horror", "horror movie", "scary", "creepy", "scarier", "spooky"),
    "Animation": ("animated", "animation", "cartoon", "cartoons"),
    "Children": ("kids", "family", "for children", "kid friendly"),
    "Sci-Fi": ("sci-fi", "science fiction", "scifi", "space"),
    "Action": ("action", "action packed", "shootout"),
    "Romance": ("romance", "romantic", "love story", "date night"),
    "Thriller": ("thriller", "thrillers", "suspenseful", "suspense"),
    "Drama": ("drama", "dramas", "emotional", "tearjerker"),
    "Documentary": ("documentary", "documentaries", "docs"),
    "Musical": ("musical", "musicals", "singing"),
    "War": ("war", "war film", "ww2"),
    "Western": ("western", "westerns", "cowboy"),
    "Crime": ("crime", "heist", "gangster", "mafia"),
    "Mystery": ("mystery", "mysteries", "whodunit", "detective"),
    "Fantasy": ("fantasy", "magic", "wizard"),
    "Adventure": ("adventure", "adventures"),
    "Film-Noir": ("film noir", "noir"),
    "IMAX": ("imax",),
}
LIKED = ("i loved {t}", "i really liked {t}", "{t} was great", "{t} is one of my favorites", "big fan of {t}",
         "i enjoyed {t} a lot", "my favorite movie is {t}", "{t} was amazing", "loved {t}", "i adore {t}",
         "{t}, loved it", "really into {t} lately")
DISLIKED = ("i hated {t}", "{t} was boring", "i couldn't stand {t}", "not a fan of {t}", "i didn't like {t}",
            "{t} was terrible", "{t} was awful", "hated {t}", "{t} was so overrated", "i disliked {t}")
SEEN = ("i've already seen {t}", "already watched {t}", "i have seen {t}", "seen {t} already",
        "i watched {t} last week")
REFERENCE = ("something like {t}", "movies similar to {t}", "anything in the vein of {t}", "more like {t}",
             "films like {t}", "something along the lines of {t}", "similar to {t} please")
SHOWN_REFERENCE = ("more like the {o} one", "the {o} one looks good, more like that", "i like #{n}, more like it",
                   "something like number {n}")
ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth")
WANT = ("a {v} movie", "some {v}", "{v} please", "looking for {v}", "in the mood for {v}", "any good {v}?",
        "recommend me {v}", "i want {v}", "something {v}", "give me {v}")
WANT_TWO = ("a {a} {b} movie", "{a} and {b}", "something {a} but also {b}", "a {a} film that is also {b}",
            "{a} with some {b}")
EITHER = ("{a} or {b}", "either {a} or {b}", "a {a} or a {b}", "{a} or maybe {b}", "{a}, or {b}, either is fine")
AVOID = ("nothing {v}", "no {v}", "not {v}", "without {v}", "i don't want {v}", "anything but {v}",
         "no {v} please", "i don't like {v}", "skip the {v}", "please avoid {v}")
YEARS = ("before {y}", "after {y}", "from the {d}", "made in the {d}", "since {y}", "released after {y}",
         "older than {y}", "newer than {y}", "from {y}", "between {y} and {y2}", "early {d}", "late {d}",
         "in {y}", "up to {y}", "pre-{y}", "post {y}")
RELATIVE = ("but more recent", "something newer", "older ones", "but older", "newer please", "more recent ones")
OPENERS = ("", "", "", "hi! ", "hey, ", "hello. ", "ok so ", "um ", "can you help? ", "quick one: ")
CLOSERS = ("", "", "", " thanks", " please", "!", " :)", "?", " lol", " any ideas?")
CORRECTIONS = ("actually, ", "actually ", "on second thought, ", "scratch that, ", "no wait, ", "instead, ",
               "changed my mind, ")


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 6 or rng.random() > 0.5:
        return word
    i = rng.randrange(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


class MessageMaker:
    """Composes messages and their drafts over one catalog."""

    def __init__(self, agent: Agent, reader: RulesReader, tags: Sequence[str], rng: random.Random) -> None:
        self.agent = agent
        self.reader = reader
        self.rng = rng
        index = agent.index
        popular = [index.ids[p] for p in index.popularity_order[:800]]
        self.titles = [i for i in popular if i in index.entries]
        vocabulary = reader.vocabulary
        self.words: dict[str, list[str]] = {}  # value -> words that the vocabulary grounds to it
        for value, words in VALUE_WORDS.items():
            for word in words:
                found = vocabulary.constraints(word, embed=False)
                if found and all(c.value == value and not c.negated for c in found):
                    self.words.setdefault(value, []).append(word)
        self.values = sorted(self.words)
        self.tags = [t for t in tags if not vocabulary.constraints(t, embed=False)]

    def title(self, item: str) -> str:
        """The title as a user writes it: mostly without the year, sometimes lower case or with a typo."""
        entry = self.agent.index.entries[item]
        r = self.rng.random()
        if r < 0.15:
            return natural_title_with_year(entry.title)
        written = natural_title(re.sub(r"\s*\((?!\d{4}\))[^()]*\)", "", entry.title))  # "(Buono, il brutto...)"
        if r < 0.4:
            written = written.lower()
        if r > 0.93:
            words = written.split()
            j = self.rng.randrange(len(words))
            words[j] = _typo(words[j], self.rng)
            written = " ".join(words)
        return written

    def value_word(self, value: str) -> str:
        return self.rng.choice(self.words[value])

    def message(self) -> tuple[str, IntentDraft, list[str]]:
        """A message, its draft and the items shown before it (for references to them)."""
        rng = self.rng
        draft = IntentDraft()
        parts: list[str] = []
        shown: list[str] = []
        kinds = rng.sample(["liked", "disliked", "seen", "like", "shown", "want", "either", "avoid", "years",
                            "tag", "relative"], k=rng.choice((1, 1, 2, 2, 2, 3)))
        used_values: set[str] = set()
        used_items: set[str] = set()

        def item() -> str:
            while True:
                chosen = rng.choice(self.titles)
                if chosen not in used_items:
                    used_items.add(chosen)
                    return chosen

        def value() -> str:
            while True:
                chosen = rng.choice(self.values)
                if chosen not in used_values:
                    used_values.add(chosen)
                    return chosen

        for kind in kinds:
            if kind in ("liked", "disliked", "seen", "like"):
                written = self.title(item())
                pattern = rng.choice({"liked": LIKED, "disliked": DISLIKED, "seen": SEEN, "like": REFERENCE}[kind])
                parts.append(pattern.format(t=written))
                getattr(draft, kind).append(written)
            elif kind == "shown":
                shown = [item() for _ in range(rng.choice((3, 4, 5)))]
                n = rng.randrange(len(shown))
                pattern = rng.choice(SHOWN_REFERENCE)
                parts.append(pattern.format(o=ORDINAL_WORDS[n], n=n + 1))
                draft.like.append(f"#{n + 1}")
            elif kind == "want":
                if rng.random() < 0.4 and len(self.values) > 3:
                    a, b = self.value_word(value()), self.value_word(value())
                    parts.append(rng.choice(WANT_TWO).format(a=a, b=b))
                    draft.want += [a, b]
                else:
                    word = self.value_word(value())
                    parts.append(rng.choice(WANT).format(v=word))
                    draft.want.append(word)
            elif kind == "either":
                a, b = self.value_word(value()), self.value_word(value())
                parts.append(rng.choice(EITHER).format(a=a, b=b))
                draft.either += [a, b]
            elif kind == "avoid":
                word = self.value_word(value())
                parts.append(rng.choice(AVOID).format(v=word))
                draft.avoid.append(word)
            elif kind == "years" and not draft.years:
                year = rng.randrange(1950, 2016)
                decade = rng.choice(("50s", "60s", "70s", "80s", "90s", "2000s", "1980s", "1990s", "'80s"))
                written = rng.choice(YEARS).format(y=year, y2=year + rng.randrange(3, 15), d=decade)
                parts.append(("a movie " if rng.random() < 0.3 else "") + written)
                draft.years = written
            elif kind == "relative" and not draft.years:
                if not draft.like and not draft.liked:
                    shown = shown or [item() for _ in range(rng.choice((3, 4, 5)))]
                written = rng.choice(RELATIVE)
                parts.append(written)
                draft.years = written.removeprefix("but ").removesuffix(" please")
            elif kind == "tag" and self.tags:
                parts.append(rng.choice(("with a ", "something ", "kind of ", "")) + rng.choice(self.tags))
        if not parts:
            word = self.value_word(value())
            parts.append(rng.choice(WANT).format(v=word))
            draft.want.append(word)
        joiner = rng.choice((", ", ". ", " and ", "; ", ", "))
        text = joiner.join(parts)
        if rng.random() < 0.12 and (draft.want or draft.avoid):
            text = rng.choice(CORRECTIONS) + text
            draft.fix = True
        text = rng.choice(OPENERS) + text + rng.choice(CLOSERS)
        if rng.random() < 0.5:
            text = text[:1].upper() + text[1:]
        return text, draft, shown


def movielens_tags(data_dir: Path, limit: int = 150) -> list[str]:
    """The most used MovieLens tags (ml-latest-small's tags.csv), lower case."""
    path = data_dir / "ml-latest-small" / "tags.csv"
    if not path.exists():
        return []
    counts: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            tag = row["tag"].strip().lower()
            if 3 <= len(tag) <= 25 and re.fullmatch(r"[a-z][a-z \-']+", tag):
                counts[tag] = counts.get(tag, 0) + 1
    return [t for t, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:limit]]


def redial_messages(agent: Agent, dialogues_path: Path) -> list[tuple[str, IntentDraft]]:
    """Seekers' messages naming catalog movies, with the seekers' own answers about them: liked (1) -> liked,
    disliked (0) -> disliked, seen without a verdict -> seen; a movie the seeker did not answer about is left
    out of the message's draft, and a message with no answered movie is not used. Nor is one whose other words
    name catalog values or years ("I like comedies like @123"): the annotation covers only the movies, so its
    draft would teach the model to leave those words out."""
    dialogues = redial_dialogues(dialogues_path)
    mapping = redial_to_catalog(agent, dialogues)
    reader = agent.conversations.reader
    assert isinstance(reader, RulesReader)
    vocabulary = reader.vocabulary
    out = []
    for dialogue in dialogues:
        seeker = dialogue.get("initiatorWorkerId")
        answers = dict(dialogue.get("initiatorQuestions") or {})  # type: ignore[call-overload]
        names = {str(k): natural_title(str(v)) for k, v in dict(dialogue.get("movieMentions") or {}).items()}  # type: ignore[call-overload]
        for message in dialogue.get("messages") or []:  # type: ignore[attr-defined]
            if message.get("senderWorkerId") != seeker:
                continue
            text = str(message.get("text", ""))
            movies = _MENTION.findall(text)
            if not movies or any(m not in names for m in movies):
                continue
            draft = IntentDraft()
            for movie in movies:
                answer = answers.get(movie) or {}
                if movie not in mapping or not isinstance(answer, dict):
                    continue
                liked, seen = answer.get("liked"), answer.get("seen")
                bucket = "liked" if liked == 1 else "disliked" if liked == 0 else "seen" if seen == 1 else None
                if bucket is not None and names[movie] not in getattr(draft, bucket):
                    getattr(draft, bucket).append(names[movie])
            if draft.liked or draft.disliked or draft.seen:
                bare = _MENTION.sub(" ", text)
                if vocabulary.constraints(bare, embed=False) or _YEARISH.search(bare):
                    continue  # words the annotation says nothing of: the draft would teach the model to skip them
                written = _MENTION.sub(lambda m, names=names: names.get(m.group(1), m.group(0)), text)  # type: ignore[misc]
                out.append((re.sub(r"\s+", " ", written).strip(), draft))
    return out


def evaluation_messages() -> list[str]:
    """Every evaluation case's messages, as comparison keys."""
    return [key(m) for case in read_all_cases() for m in case.messages]


def leaks(message: str, evaluation: Sequence[str]) -> bool:
    """Whether a training message equals an evaluation message or contains one of four words or more."""
    k = f" {key(message)} "
    return any(e and (k.strip() == e or (len(e.split()) >= 4 and f" {e} " in k)) for e in evaluation)


def intent_examples(agent: Agent, template: PromptTemplate, count: int, dialogues: Path | None, data_dir: Path,
                    seed: int = 0, redial_share: float = 0.25) -> list[IntentExample]:
    """`count` examples: generated messages and (when `dialogues` is given) ReDial seekers' messages."""
    rng = random.Random(seed)
    reader = agent.conversations.reader
    assert isinstance(reader, RulesReader), "training data is made over the rules reader's vocabulary"
    values = catalog_values(reader)
    evaluation = evaluation_messages()
    redial = redial_messages(agent, dialogues) if dialogues is not None else []
    rng.shuffle(redial)
    wanted_redial = min(len(redial), int(count * redial_share))
    maker = MessageMaker(agent, reader, movielens_tags(data_dir), rng)
    examples: list[IntentExample] = []

    def add(message: str, draft: IntentDraft, shown: list[str], source: str) -> None:
        if leaks(message, evaluation):
            return
        # the values in another order, a few left out: the catalog the model reads at serving time lists them by
        # its own counts (another split, another index), and the words to copy are in the message anyway
        listed = [v for v in values if rng.random() > 0.15]
        rng.shuffle(listed)
        prompt = intent_prompt(template, reader, message, shown, ", ".join(listed or values))
        examples.append(IntentExample(prompt, " " + draft_target(draft), source))

    for message, draft in redial[:wanted_redial]:
        add(message, draft, [], "redial")
    while len(examples) < count:
        message, draft, shown = maker.message()
        add(message, draft, shown, "generated")
    rng.shuffle(examples)
    return examples


def save_intent_examples(path: Path, examples: Sequence[IntentExample]) -> None:
    write_examples(path, examples)


def load_intent_examples(path: Path) -> list[IntentExample]:
    return read_examples(path, lambda row: IntentExample(**row))

