"""Reply prompts and adapters on a fixed request set built from the data.

The requests are deterministic: known users (the first validation users, their history), free text (the
catalog's most common descriptive values, "something <value>") and constraints (the same values with a
decade, read into filters by the conversation agent's own understanding). The retriever picks the items
once; every variant writes about the same items. A reply is split into sentences the way the reply
writer splits them, and each sentence is judged by `Grounding.problem` in order (one attempt, no early
stop, so every variant is judged on its whole output).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from agent.assemble import Agent
from agent.events import Recommendation, TurnRequest
from agent.respond import RETRY_SUFFIX, Grounding
from eval.llm_cache import CachedLLM
from eval.protocols import Case
from eval.stats import distinct_n

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_LABEL = re.compile(r"\[([A-Za-z0-9]{1,3})\]")
Row = dict[str, Any]


@dataclass(frozen=True)
class ReplyRequest:
    unit: str
    kind: str  # user, free_text, constraints
    request: TurnRequest
    items: tuple[Recommendation, ...]
    prompt_request: str  # what the reply prompt says the user asked


def build_requests(agent: Agent, cases: Sequence[Case], per_kind: int = 4, k: int = 5) -> list[ReplyRequest]:
    """`per_kind` requests of each kind, the same on every run over the same data."""
    index = agent.index
    attribute = index.descriptive_attribute
    counts: Counter[str] = Counter()
    for entry in index.entries.values():
        value = entry.attributes.get(attribute) if attribute else None
        counts.update(value if isinstance(value, list) else [value] if isinstance(value, str) else [])
    values = [v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:per_kind]
    requests: list[TurnRequest] = [TurnRequest(history=tuple(c.history[-20:]), k=k) for c in cases[:per_kind]]
    texts = [f"something {v.lower()}" for v in values]
    requests += [TurnRequest(query=t, k=k) for t in texts]
    conversations = agent.conversations
    for n, value in enumerate(values):
        message = f"a {value.lower()} {index.noun} from the {1970 + 10 * (n % 4)}s"
        state = conversations.create()
        conversations.read_message(state, message)
        requests.append(conversations.request(state, message, k=k))
        conversations.store.delete(state.id)
    kinds = ["user"] * len(cases[:per_kind]) + ["free_text"] * len(texts) + ["constraints"] * len(values)
    out = []
    for n, (kind, request) in enumerate(zip(kinds, requests, strict=True)):
        retrieved = agent.pipeline.retrieve(request)
        order = [c.id for c in retrieved.candidates]
        items = agent.pipeline.explain(request, retrieved, order)
        recent = [index.entries[h].title for h in retrieved.seen[-3:] if h in index.entries]
        asked = request.query or ("more like " + ", ".join(recent) if recent else "recommendations")
        out.append(ReplyRequest(f"{kind}-{n}", kind, request, tuple(items), asked))
    return out


def reply_rows(agent: Agent, llm: CachedLLM, label: str, requests: Sequence[ReplyRequest],
               progress: bool = True, workers: int = 1) -> list[Row]:
    """One row per request; with workers > 1 (a served model) the replies are computed that many at once."""
    replier = agent.pipeline.replier
    assert replier is not None
    titles = list(agent.index.titles.values())
    instructions = replier.template.render(noun=replier.noun, request="", items=[]) + RETRY_SUFFIX
    prompts = [replier.prompt(r.prompt_request, r.items) for r in requests]  # (labels shown, prompt text)
    if workers > 1:
        llm.prefetch_completions([prompt for _, prompt in prompts], replier.max_tokens, ["\n\n\n"],
                                 replier.adapter, workers)
    rows = []
    for req, (shown, prompt) in tqdm(zip(requests, prompts, strict=True), total=len(requests),
                                     desc=f"replies ({label})", unit="request", disable=not progress):
        before = len(llm.calls)
        raw = llm.complete([prompt], max_tokens=replier.max_tokens, stop=["\n\n\n"], adapter=replier.adapter)[0]
        call = llm.calls[before]
        evidence = [agent.index.entries[e].title for item in req.items for e in item.evidence
                    if e in agent.index.entries]
        grounding = Grounding(shown, titles, evidence, instructions, req.request.query or "")
        sentences = [s.strip() for s in _SENTENCE.split(raw.strip()) if s.strip()]
        accepted = [s for s in sentences if grounding.accept(s)]
        cited = {label for s in accepted for label in _LABEL.findall(s)}
        reply = " ".join(grounding.render(s) for s in accepted)
        rows.append({"entry": label, "unit": req.unit, "kind": req.kind, "raw": raw, "reply": reply,
                     "latency_s": call.latency_s, "cached": call.cached, "tokens": call.tokens,
                     "metrics": {"grounded": float(bool(accepted)),
                                 "accepted_sentences": len(accepted) / len(sentences) if sentences else 0.0,
                                 "items_mentioned": len(cited) / max(len(shown), 1),
                                 "length_words": float(len(raw.split()))}})
    return rows


def diversity(rows: Sequence[Row]) -> float:
    """distinct-2 over a variant's raw replies."""
    return round(distinct_n([r["raw"] for r in rows], 2), 4)
