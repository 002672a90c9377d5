"""Grounded recommendations: ranked catalog items, each with an evidence-based reason, and a reply.

The LLM may rerank the candidates and write the reply, but it cannot add items: the reply names items
only through labels that recagent maps to the ranked items, and every sentence that names anything
else (an invented or unranked title, an unknown label) or carries instructions is dropped. When the
LLM is down, slow or returns garbage, the retriever's order and templated sentences are used, and the
response says so in `fallback`.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from agent.catalog import LoadedIndex
from agent.llm.base import LLM, LLMError
from prompts.loader import load_prompt

LABELS = string.ascii_uppercase
_LABEL = re.compile(r"\[([A-Za-z0-9]{1,3})\]")
_TITLE_WITH_YEAR = re.compile(r"[A-Z][^.!?\[\]]{1,80}?\(\d{4}\)")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_INSTRUCTION = re.compile(r"ignore (all |any )?(previous|prior|above)|system prompt|instructions?:|you are now|"
                          r"disregard|<\s*/?\s*(system|start_of_turn)", re.IGNORECASE)


class Recommendation(BaseModel):
    id: str
    title: str
    score: float
    reason: str
    evidence: list[str] = Field(default_factory=list, description="history items and attributes cited")
    attributes: dict[str, Any] = Field(default_factory=dict)


class RecommendationResponse(BaseModel):
    items: list[Recommendation]
    reply: str
    reranked_by: str = Field(description="'llm' or 'retriever'")
    reply_by: str = Field(description="'llm' or 'template'")
    fallback: bool = Field(description="true when the LLM could not be used for ranking or the reply")
    fallback_reason: str | None = None
    timings: dict[str, float] = Field(default_factory=dict, description="seconds: retrieval, rerank, reply")


class GroundedReply(BaseModel):
    """A reply whose sentences cite only allowed labels. Construct with context={'allowed': labels}."""

    sentences: list[str]

    @field_validator("sentences")
    @classmethod
    def _only_allowed_labels(cls, sentences: list[str], info: ValidationInfo) -> list[str]:
        allowed = set((info.context or {}).get("allowed", ()))
        cited = [label for s in sentences for label in _LABEL.findall(s)]
        if not sentences or not cited:
            raise ValueError("the reply cites no recommended item")
        unknown = sorted(set(cited) - allowed)
        if unknown:
            raise ValueError(f"the reply cites unknown labels {unknown}")
        return sentences


def _titles_in(text: str, titles: Sequence[str]) -> set[str]:
    lowered = text.casefold()
    return {t for t in titles if len(t) >= 5 and t.casefold() in lowered}


def clean_reply(raw: str, shown: dict[str, str], catalog_titles: Sequence[str],
                evidence_titles: Sequence[str] = ()) -> list[str]:
    """Keep the sentences that cite only shown labels and name no other item (history items cited as
    evidence excepted)."""
    kept = []
    allowed_titles = {t.casefold() for t in [*shown.values(), *evidence_titles]}
    for sentence in _SENTENCE.split(raw.strip()):
        sentence = sentence.strip()
        labels = _LABEL.findall(sentence)
        if not sentence or not labels or any(label not in shown for label in labels):
            continue
        if _INSTRUCTION.search(sentence):
            continue
        without_labels = _LABEL.sub(" ", sentence)
        named = {t.casefold() for t in _titles_in(without_labels, catalog_titles)}
        named |= {m.strip().casefold() for m in _TITLE_WITH_YEAR.findall(without_labels)}
        if any(not any(n in a or a in n for a in allowed_titles) for n in named):
            continue  # names an item that is not among the recommendations, or an invented one
        kept.append(sentence)
    return kept


def evidence_for(index: LoadedIndex, item_id: str, history: Sequence[str], query: str | None
                 ) -> tuple[str, list[str]]:
    """A templated reason from the data: related history items (co-occurrence) and shared attributes."""
    evidence: list[str] = []
    parts: list[str] = []
    position = index.position.get(item_id)
    related: list[tuple[float, str]] = []
    if position is not None:
        for h in history[-50:]:
            hp = index.position.get(h)
            if hp is not None:
                weight = float(index.cooccurrence[hp, position])
                if weight > 0:
                    related.append((weight, h))
    related.sort(reverse=True)
    picks = [h for _, h in related[:2]]
    if picks:
        names = [index.entries[h].title for h in picks if h in index.entries]
        parts.append("people who liked " + " and ".join(names) + " also liked it")
        evidence += picks
    genres = index.entries[item_id].attributes.get("genres", []) if item_id in index.entries else []
    if isinstance(genres, list) and genres and history:
        counts: Counter[str] = Counter()
        for h in history[-20:]:
            h_genres = index.entries[h].attributes.get("genres", []) if h in index.entries else []
            counts.update(g for g in h_genres if g in genres)
        shared = [g for g, _ in counts.most_common(2)]
        if shared:
            parts.append("it is " + " and ".join(shared) + ", like much of what you watched")
            evidence += [f"genre:{g}" for g in shared]
    if query:
        parts.append(f"it fits your request ({query.strip()[:60]})")
        evidence.append("query")
    if not parts:
        parts.append("it is popular with people whose taste is close to yours")
    reason = "; ".join(parts)
    return reason[0].upper() + reason[1:] + ".", evidence


def template_reply(items: Sequence[Recommendation]) -> str:
    if not items:
        return "I found nothing that matches; try fewer constraints."
    lines = [f"Here are {len(items)} picks for you:"]
    lines += [f"{n}. {item.title} — {item.reason}" for n, item in enumerate(items, start=1)]
    return "\n".join(lines)


def _reply_prompt(request: str, items: Sequence[Recommendation]) -> tuple[dict[str, str], str]:
    """The labels shown to the LLM (label -> title) and the rendered reply prompt."""
    shown = {LABELS[i]: item.title for i, item in enumerate(items)}
    prompt = load_prompt("reply").render(request=request, items=[
        {"label": LABELS[i], "title": item.title, "reason": item.reason} for i, item in enumerate(items)])
    return shown, prompt


def write_reply(llm: LLM, request: str, items: Sequence[Recommendation], catalog_titles: Sequence[str],
                evidence_titles: Sequence[str] = (), attempts: int = 2) -> str | None:
    """The LLM's reply with labels turned into titles, or None if nothing grounded came back."""
    shown, prompt = _reply_prompt(request, items)
    for attempt in range(attempts):
        suffix = "" if attempt == 0 else "\nUse only the labels above, like [A].\n"
        raw = llm.complete([prompt + suffix], max_tokens=160, stop=["\n\n\n"])[0]
        try:
            reply = GroundedReply.model_validate({"sentences": clean_reply(raw, shown, catalog_titles,
                                                                                 evidence_titles)},
                                                 context={"allowed": list(shown)})
        except ValueError:
            continue
        text = " ".join(reply.sentences)
        return _LABEL.sub(lambda m: shown[m.group(1)], text)
    return None


_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


def stream_reply(llm: LLM, request: str, items: Sequence[Recommendation], catalog_titles: Sequence[str],
                 evidence_titles: Sequence[str] = ()) -> Iterator[str]:
    """The LLM's reply, one grounded sentence at a time as soon as it is written (labels -> titles).

    Each sentence passes the same check as `write_reply`; a sentence that fails is dropped, never shown.
    """
    shown, prompt = _reply_prompt(request, items)
    buffer, emitted = "", False

    def grounded(text: str) -> Iterator[str]:
        nonlocal emitted
        for sentence in clean_reply(text, shown, catalog_titles, evidence_titles):
            yield (" " if emitted else "") + _LABEL.sub(lambda m: shown[m.group(1)], sentence)
            emitted = True

    for piece in llm.stream_complete(prompt, max_tokens=160, stop=["\n\n\n"]):
        buffer += piece
        while (end := _SENTENCE_END.search(buffer)) is not None:
            sentence, buffer = buffer[: end.end()], buffer[end.end():]
            yield from grounded(sentence)
    yield from grounded(buffer)


def safe_rerank(llm: LLM | None, rerank: Any, history: Sequence[str], ids: Sequence[str]
                ) -> tuple[list[str], str | None]:
    """The LLM's order, or the retriever's with the reason the LLM could not be used."""
    if llm is None or len(ids) < 2:
        return list(ids), None if llm is not None else "no LLM configured"
    try:
        result = rerank([(history, ids)])[0]
    except LLMError as exc:
        return list(ids), str(exc)
    if result.scored == 0:
        return list(ids), "the LLM scored none of the candidates"
    return result.order, None
