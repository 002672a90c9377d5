"""Reply prompts and adapters on a fixed request set built from the data, and the reply metrics.

The requests are deterministic: known users (the first validation users, their history), free text (the
catalog's most common descriptive values, "something <value>"), constraints (the same values with a decade,
read into filters by the conversation agent's own understanding), the `intents` cases of the dataset (their
messages through a fresh conversation, the last one's request) and ReDial seekers' opening messages. The
retriever picks the items once; every variant writes about the same items, through the pipeline's own reply
step (`TurnPipeline.reply_parts`: the acknowledgment, the LLM's grounded sentences, sentences from the
evidence for the items it left out). The `template` variant has no LLM.

Per reply: `llm_reply` (the LLM wrote at least one grounded sentence), `llm_items` (share of items it wrote
about), `false_claims` (share of the reply's sentences, the acknowledgment included, that state something
their items' evidence does not have, by agent.claims' check, which also runs on template sentences),
`raw_false_claims` (the same on the LLM's own sentences before grounding), `generic` (an item sentence that,
titles taken out, is another item's sentence of the reply, or names no fact), `acknowledged` (requests with
constraints: the first sentence names every constraint value), `distinct_2` within the reply (titles taken
out), `words_per_item`, `latency_s`. distinct-2 across replies is reported per variant.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from agent.assemble import Agent
from agent.claims import ClaimChecker, ItemFacts, content_free, strip_titles
from agent.compose import constraints_of
from agent.events import Recommendation, TurnRequest
from agent.respond import Grounding
from agent.turn import Ranked
from eval.protocols import Case
from eval.stats import distinct_n

_SENTENCE = re.compile(r"(?<=[.!?:])\s+|\n+")
_WORD = re.compile(r"[a-z0-9']+")
CASES_DIR = Path(__file__).parent / "cases"
Row = dict[str, Any]


@dataclass(frozen=True)
class ReplyRequest:
    unit: str
    kind: str  # user, free_text, constraints, intents, redial
    request: TurnRequest
    items: tuple[Recommendation, ...]
    prompt_request: str  # what the reply prompt says the user asked
    seen: tuple[str, ...] = ()


def _intent_messages(dataset: str) -> list[tuple[str, list[str]]]:
    """(case id, messages) of the dataset's intents cases (dev and test: replies are not what they tune)."""
    path = CASES_DIR / ("intents.jsonl" if dataset == "ml-latest-small" else f"intents-{dataset}.jsonl")
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            case = json.loads(line)
            if case.get("dataset", dataset) == dataset:
                out.append((str(case["id"]), [str(m) for m in case["messages"]]))
    return out


def _seeker_openings(data_dir: Path, limit: int) -> list[str]:
    """The first message of substance (five words or more, no movie mention) of each ReDial validation seeker."""
    path = data_dir / "redial" / "valid_data_sample100.jsonl"
    if not path.exists() or limit <= 0:
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        dialogue = json.loads(line)
        seeker = dialogue.get("initiatorWorkerId")
        for message in dialogue.get("messages", []):
            text = str(message.get("text", ""))
            if message.get("senderWorkerId") == seeker and len(text.split()) >= 5 and "@" not in text:
                out.append(text)
                break
        if len(out) >= limit:
            break
    return out


def build_requests(agent: Agent, cases: Sequence[Case], per_kind: int = 4, k: int = 5, dataset: str | None = None,
                   intents: int = 1000, redial: int = 0, data_dir: Path | None = None) -> list[ReplyRequest]:
    """`per_kind` requests of each generated kind, then up to `intents` intents cases of `dataset` and `redial`
    ReDial seeker openings: the same on every run over the same data."""
    index = agent.index
    attribute = index.descriptive_attribute
    counts: Counter[str] = Counter()
    for entry in index.entries.values():
        value = entry.attributes.get(attribute) if attribute else None
        counts.update(value if isinstance(value, list) else [value] if isinstance(value, str) else [])
    values = [v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:per_kind]
    planned: list[tuple[str, str, TurnRequest]] = [(f"user-{n}", "user", TurnRequest(history=tuple(c.history[-20:]),
                                                                                     k=k))
                                                   for n, c in enumerate(cases[:per_kind])]
    planned += [(f"free_text-{n}", "free_text", TurnRequest(query=f"something {v.lower()}", k=k))
                for n, v in enumerate(values)]
    conversations = agent.conversations

    def through(messages: Sequence[str]) -> TurnRequest:
        state = conversations.create()
        try:
            for message in messages[:-1]:
                conversations.respond(state.id, message, without_llm="reply benchmark setup")
            state = conversations.store.get(state.id)
            conversations.read_message(state, messages[-1])
            return conversations.request(state, messages[-1], k=k)
        finally:
            conversations.store.delete(state.id)

    planned += [(f"constraints-{n}", "constraints", through([f"a {v.lower()} {index.noun} from the "
                                                              f"{1970 + 10 * (n % 4)}s"]))
                for n, v in enumerate(values)]
    for case_id, messages in _intent_messages(dataset or "")[:intents]:
        planned.append((f"intents-{case_id}", "intents", through(messages)))
    if data_dir is not None:
        for n, text in enumerate(_seeker_openings(data_dir, redial)):
            planned.append((f"redial-{n}", "redial", through([text])))
    out = []
    for unit, kind, request in planned:
        retrieved = agent.pipeline.retrieve(request)
        order = [c.id for c in retrieved.candidates]
        items = agent.pipeline.explain(request, retrieved, order)
        recent = [index.entries[h].title for h in retrieved.seen[-3:] if h in index.entries]
        asked = request.query or ("more like " + ", ".join(recent) if recent else "recommendations")
        out.append(ReplyRequest(unit, kind, request, tuple(items), asked, tuple(retrieved.seen)))
    return out


class _Recording:
    """An LLM in front of another that keeps the text it streamed (the raw reply, before grounding)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.texts: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def stream_complete(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = (),
                        adapter: str | None = None) -> Iterator[str]:
        self.texts.append("")
        for piece in self.inner.stream_complete(prompt, max_tokens=max_tokens, stop=stop, adapter=adapter):
            self.texts[-1] += piece
            yield piece


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def sentence_problem(checker: ClaimChecker, sentence: str, facts: Sequence[ItemFacts], catalog_titles: Sequence[str],
                     noun_words: Sequence[str]) -> str | None:
    """Why a shown sentence (titles, not labels) states something its items' evidence does not have."""
    own = [t for f in facts for t in f.own_titles]
    mine = [f.title for f in facts]
    stripped = strip_titles(sentence, [*mine, *own])
    lowered = stripped.casefold()
    named = [t for t in catalog_titles if len(t) >= 8 and t.casefold() in lowered]
    if named:
        return f"names {named[0]!r}, not in its evidence"
    return checker.problem(stripped, facts, noun_words)


def acknowledges(first: str, request: TurnRequest) -> bool:
    """The first sentence, no title in it, names every constraint value of the request."""
    wanted = [v for c in constraints_of(request.filters) for v in (*c.all_of, *c.any_of, *c.none_of)]
    lowered = first.casefold()
    return first.rstrip().endswith(":") and all(v.casefold() in lowered for v in wanted)


def reply_rows(agent: Agent, label: str, requests: Sequence[ReplyRequest], progress: bool = True) -> list[Row]:
    """One row per request, written by this variant's pipeline (its LLM is the cached one), one at a time."""
    index = agent.index
    pipeline = copy.copy(agent.pipeline)
    recording = None
    if pipeline.replier is not None:
        pipeline.replier = copy.copy(pipeline.replier)
        recording = _Recording(pipeline.replier.llm)
        pipeline.replier.llm = recording
    checker = pipeline.checker
    titles = list(index.titles.values())
    nouns = (index.noun, index.noun + "s")
    rows = []
    for req in tqdm(requests, desc=f"replies ({label})", unit="request", disable=not progress):
        before = len(recording.texts) if recording else 0
        started = time.perf_counter()
        parts = list(pipeline.reply_parts(req.request, Ranked(list(req.items), False, None), list(req.seen)))
        latency = time.perf_counter() - started
        facts = [ItemFacts.of(index, item) for item in req.items]
        reply = " ".join(sentence for _, sentence, _ in parts)
        item_parts = [(by, s, about) for by, s, about in parts if len(about) == 1 or by == "llm"]
        shown = [p for p in parts if p[2]]
        false = [sentence_problem(checker, s, [facts[n] for n in about], titles, nouns) for _, s, about in shown]
        stripped = [" ".join(_words(strip_titles(s, [req.items[n].title for n in about])))
                    for _, s, about in item_parts]
        generic = [stripped.count(text) > 1 or content_free(s, [req.items[n].title for n in about], checker, nouns,
                                                              [t for n in about for t in facts[n].own_titles])
                   for text, (_, s, about) in zip(stripped, item_parts, strict=True)]
        raw = "".join(recording.texts[before:]) if recording else ""
        raw_false = _raw_false_claims(agent, checker, raw, req, facts) if recording else None
        words = _words(strip_titles(reply, [i.title for i in req.items]))
        grams = [tuple(words[i:i + 2]) for i in range(len(words) - 1)]
        llm_items = {n for by, _, about in parts if by == "llm" for n in about}
        metrics: dict[str, float] = {
            "llm_reply": float(bool(llm_items)), "llm_items": len(llm_items) / max(len(req.items), 1),
            "false_claims": sum(p is not None for p in false) / max(len(false), 1),
            "generic": sum(generic) / max(len(generic), 1),
            "distinct_2": len(set(grams)) / len(grams) if grams else 0.0,
            "words_per_item": len(reply.split()) / max(len(req.items), 1)}
        if raw_false is not None:
            metrics["raw_false_claims"] = raw_false
        if constraints_of(req.request.filters):
            metrics["acknowledged"] = float(bool(parts) and acknowledges(parts[0][1], req.request))
        rows.append({"entry": label, "unit": req.unit, "kind": req.kind, "raw": raw, "reply": reply,
                     "reply_frames": " ".join(words),
                     "problems": [p for p in false if p], "latency_s": latency, "cached": False, "tokens": None,
                     "metrics": metrics})
    return rows


def _raw_false_claims(agent: Agent, checker: ClaimChecker, raw: str, req: ReplyRequest,
                      facts: Sequence[ItemFacts]) -> float:
    """Share of the LLM's own sentences that cite a label and state something its items' evidence lacks."""
    replier = agent.pipeline.replier
    assert replier is not None
    shown, _ = replier.prompt(req.prompt_request, req.items)
    grounding = Grounding(shown, list(agent.index.titles.values()), facts=dict(zip(shown, facts, strict=False)),
                          checker=checker, noun_words=(agent.index.noun, agent.index.noun + "s"))
    sentences = [s.strip() for s in _SENTENCE.split(raw.strip()) if s.strip() and "[" in s]
    if not sentences:
        return 0.0
    false = 0
    for sentence in sentences:
        problem = grounding.problem(sentence)
        if problem is not None and problem not in ("says nothing about the item", "uses another item's sentence frame",
                                                   "repeats a sentence", "repeats items already covered"):
            false += 1
        grounding.seen_sentences.add(sentence)
    return false / len(sentences)


def diversity(rows: Sequence[Row]) -> float:
    """distinct-2 across a variant's replies, titles taken out (they differ by themselves)."""
    return round(distinct_n([r["reply_frames"] for r in rows], 2), 4)
