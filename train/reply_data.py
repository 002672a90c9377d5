"""Training examples for the reply writer: the agent's own reply prompt, and a reply the grounding check
accepts with every claim checked on the items' facts (agent.claims): one sentence per item, citing it by its
label, each in a frame no other item of the reply uses.

The prompts come from the real pipeline (retrieval and evidence over the training part of `loo`), for
requests in real language where we have it: seekers' messages in ReDial's training dialogues, and
known MovieLens users (whose request is their recent items). The sentences are ReDial recommenders' own
(about one movie, naming no person, no other title and no recency) where the claim check finds nothing in
them the item's evidence lacks, and otherwise the evidence put into words by agent.compose's frames (the
user's items it goes with, the values it shares with them, the constraints it meets, its values, its
popularity here). Every target passes the check the agent applies, or it is not used.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.assemble import Agent
from agent.claims import ClaimChecker, ItemFacts
from agent.compose import item_sentences
from agent.dialogue import title_key
from agent.events import Recommendation, TurnRequest
from agent.respond import Grounding, reply_prompt
from agent.turn import reply_request
from core.labels import LABELS
from core.titles import natural_title as natural_title_with_year
from prompts.loader import PromptTemplate
from train.jsonl import read_examples, write_examples

_MENTION = re.compile(r"@(\d+)")
_YEAR = re.compile(r"\((\d{4})\)\s*$")
_RECENCY = re.compile(r"\b(new|newer|newest|recent|recently|theat\w*|latest|upcoming|came out|sequel|prequel|"
                      r"remake|franchise|series|trilogy|part \d|season)\b", re.IGNORECASE)
_ASKING = re.compile(r"\b(like|love|looking|recommend|movie|film|watch|enjoy|fan|something|any|kind|type|into|"
                     r"prefer|favorite|favourite|funny|scary|comed|horror|action|romance|drama)", re.IGNORECASE)
_CLOSING = re.compile(r"\b(bye|goodbye|thanks|thank you|have a good)\b", re.IGNORECASE)
_PRONOUN_CAPS = {"I", "I'm", "I've", "I'd", "I'll", "OK", "Ok"}


@dataclass(frozen=True)
class ReplyExample:
    prompt: str
    target: str  # starts with a space: it continues the prompt's "Reply:"
    source: str  # which requests and sentences it was made from


def natural_title(title: str) -> str:
    """'Matrix, The (1999)' -> 'The Matrix': how people write a title in a sentence."""
    title = _YEAR.sub("", title).strip()
    return re.sub(r"^(.*), (The|A|An)$", r"\2 \1", title)


def redial_dialogues(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def redial_to_catalog(agent: Agent, dialogues: Sequence[dict[str, object]]) -> dict[str, str]:
    """ReDial movie ids -> catalog item ids, by title words and year."""
    by_key: dict[tuple[str, str], str] = {}
    for item_id, entry in agent.index.entries.items():
        year = _YEAR.search(entry.title)
        by_key.setdefault((title_key(entry.title), year.group(1) if year else ""), item_id)
    mapping = {}
    for dialogue in dialogues:
        for movie, name in dict(dialogue.get("movieMentions") or {}).items():  # type: ignore[call-overload]
            name = re.sub(r"\s+", " ", str(name)).strip()
            year = _YEAR.search(name)
            hit = by_key.get((title_key(name), year.group(1) if year else ""))
            if hit:
                mapping[str(movie)] = hit
    return mapping


def _clean_sentence(text: str) -> str | None:
    """A ReDial sentence with one mention, as a template with '{L}', or None if it says more than taste."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(_MENTION.findall(text)) != 1 or _RECENCY.search(text) or not 3 <= len(text.split()) <= 25:
        return None
    words = re.sub(r"@\d+", " ", text).split()
    if any(w[0].isupper() and w.strip(".,!?") not in _PRONOUN_CAPS for w in words[1:]):
        return None  # a person, place or another title
    text = _MENTION.sub("{L}", text)
    if re.search(r"\d{4}|\"|\(", text):
        return None
    text = text[0].upper() + text[1:]
    if text[-1] not in ".!?":
        text += "?" if text.lower().startswith(("have you", "did you", "what about", "how about")) else "."
    return text


def recommender_sentences(dialogues: Sequence[dict[str, object]], mapping: dict[str, str]
                          ) -> dict[str, list[str]]:
    """Catalog item id -> templates ('{L}' for the label) that ReDial recommenders wrote about it."""
    pool: dict[str, list[str]] = defaultdict(list)
    for dialogue in dialogues:
        recommender = dialogue.get("respondentWorkerId")
        for message in dialogue.get("messages") or []:  # type: ignore[attr-defined]
            if message.get("senderWorkerId") != recommender:
                continue
            for sentence in re.split(r"(?<=[.!?])\s+", str(message.get("text", ""))):
                mentions = _MENTION.findall(sentence)
                template = _clean_sentence(sentence)
                if template and mentions and mentions[0] in mapping:
                    pool[mapping[mentions[0]]].append(template)
    return pool


def seeker_requests(dialogues: Sequence[dict[str, object]], mapping: dict[str, str], agent: Agent
                    ) -> list[tuple[str, tuple[str, ...]]]:
    """(request text, liked catalog items) from what seekers wrote before a recommendation."""
    requests = []
    for dialogue in dialogues:
        seeker = dialogue.get("initiatorWorkerId")
        names = {str(k): natural_title(str(v)) for k, v in dict(dialogue.get("movieMentions") or {}).items()}  # type: ignore[call-overload]
        said: list[str] = []
        liked: list[str] = []
        for message in dialogue.get("messages") or []:  # type: ignore[attr-defined]
            text = str(message.get("text", ""))
            if message.get("senderWorkerId") == seeker:
                for movie in _MENTION.findall(text):
                    if movie in mapping and mapping[movie] not in liked:
                        liked.append(mapping[movie])
                said.append(_titled(text, names))
            elif _MENTION.search(text) and said:
                request = " ".join(said[-2:]).strip()
                if 2 <= len(request.split()) <= 40 and _ASKING.search(request) and not _CLOSING.search(request):
                    requests.append((request, tuple(liked)))
                said = []
    return requests


def _titled(text: str, names: dict[str, str]) -> str:
    """A ReDial message with its @ids written as titles, as a user would type them."""
    return _MENTION.sub(lambda m: names.get(m.group(1), "that movie"), text)


class SentenceMaker:
    """One sentence per item from its evidence, in varied words (ReDial's where they fit)."""

    def __init__(self, agent: Agent, redial: dict[str, list[str]], rng: random.Random) -> None:
        self.agent = agent
        self.redial = redial
        self.rng = rng
        self.noun = agent.index.noun
        attribute = agent.index.descriptive_attribute
        self.attribute = attribute
        self.by_values: dict[str, list[tuple[str, frozenset[str]]]] = defaultdict(list)
        vocabulary = agent.conversations.vocabulary
        for item_id, templates in redial.items():
            for template in templates:
                named = frozenset(c.value for c in vocabulary.constraints(template.replace("{L}", "it"), embed=False))
                self.by_values[item_id].append((template, named))

    def _values(self, item_id: str) -> set[str]:
        value = self.agent.index.entries[item_id].attributes.get(self.attribute or "", [])
        return set(value) if isinstance(value, list) else {str(value)} if value else set()

    def redial_sentence(self, item_id: str) -> str | None:
        """A ReDial sentence about this movie, or one about another movie whose genre words all fit it."""
        own = self.by_values.get(item_id)
        if own and self.rng.random() < 0.7:
            return self.rng.choice(own)[0]
        values = self._values(item_id)
        pool = [t for other in self.rng.sample(list(self.by_values), min(30, len(self.by_values)))
                for t, named in self.by_values[other] if named <= values]  # generic ones ("a classic") too
        return self.rng.choice(pool) if pool else None

    def reply(self, items: Sequence[Recommendation], asked: bool, grounding: Grounding | None = None) -> str:
        """One sentence per item: a ReDial sentence where `grounding` (with the items' facts) finds it true and
        new, else the item's evidence in a frame not used yet in this reply."""
        sentences: list[str] = []
        used: set[str] = set()
        index = self.agent.index
        for label, item in zip(LABELS, items, strict=False):
            found = self.redial_sentence(item.id) if self.rng.random() < 0.5 else None
            candidate = found.replace("{L}", f"[{label}]") if found else None
            if candidate is not None and grounding is not None and grounding.accept(candidate):
                sentences.append(candidate)
                continue
            rotation = self.rng.randrange(1000)  # the frames' start, so targets vary over the examples
            (_, sentence), = item_sentences(index, [item.model_copy(update={"id": f"{item.id}#{rotation}"})],
                                            used=used)
            title = natural_title_with_year(item.title)
            sentence = sentence.replace(title, f"[{label}]", 1)
            if grounding is not None:
                grounding.accept(sentence)
            sentences.append(sentence)
        return " " + " ".join(sentences)


def reply_examples(agent: Agent, template: PromptTemplate, dialogues_path: Path, count: int, seed: int = 0,
                   max_items: int = 5) -> list[ReplyExample]:
    """`count` examples: about half from ReDial seekers' requests, half from known users' histories."""
    rng = random.Random(seed)
    dialogues = redial_dialogues(dialogues_path)
    mapping = redial_to_catalog(agent, dialogues)
    maker = SentenceMaker(agent, recommender_sentences(dialogues, mapping), rng)
    requests = seeker_requests(dialogues, mapping, agent)
    users = agent.index.store.user_ids()
    titles = list(agent.index.titles.values())
    checker = ClaimChecker.for_index(agent.index)
    examples: list[ReplyExample] = []
    attempts = 0
    while len(examples) < count and attempts < count * 5:
        attempts += 1
        k = rng.randint(1, max_items)
        if rng.random() < 0.5 and requests:
            text, liked = rng.choice(requests)
            turn = TurnRequest(history=liked, query=text, k=k)
            source = "redial-request"
        else:
            turn = TurnRequest(user=rng.choice(users), k=k)
            source = "user-history"
        response = agent.pipeline.recommend(turn)
        if not response.items:
            continue
        seen = list(agent.index.user_history(turn.user)[0]) if turn.user else list(turn.history)
        request = reply_request(agent.index, turn.query, seen)
        shown, prompt = reply_prompt(template, agent.index.noun, request, response.items)
        cited = [agent.index.entries[e].title for i in response.items for e in i.evidence if e in agent.index.entries]
        facts = [ItemFacts.of(agent.index, item) for item in response.items]

        arguments = (shown, titles, cited, template.render(noun=agent.index.noun, request="", items=[]),
                     turn.query or "")
        options = {"facts": dict(zip(shown, facts, strict=False)), "checker": checker,
                   "noun_words": (agent.index.noun, agent.index.noun + "s")}
        target = maker.reply(response.items, asked=turn.query is not None,
                             grounding=Grounding(*arguments, **options))  # type: ignore[arg-type]
        sentences = re.split(r"(?<=[.!?])\s+", target.strip())
        final = Grounding(*arguments, **options)  # type: ignore[arg-type]
        if len(sentences) != len(response.items) or not all(final.accept(s) for s in sentences):
            continue  # a target the agent's own check would refuse is no example
        examples.append(ReplyExample(prompt, target, source))
    return examples


def save_reply_examples(path: Path, examples: Sequence[ReplyExample]) -> None:
    write_examples(path, examples)


def load_reply_examples(path: Path) -> list[ReplyExample]:
    return read_examples(path, lambda row: ReplyExample(**row))
