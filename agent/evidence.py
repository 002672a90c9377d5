"""Evidence about a candidate, taken from the index: what the reranker's prompt may show next to a
title, and the templated reason given to the user. Everything here is data the retriever already has."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.catalog import LoadedIndex
from core.titles import natural_title

HISTORY_SPAN = 20  # recent history items the co-occurrence evidence looks at


def popularity_word(index: LoadedIndex, item_id: str) -> str:
    position = index.position.get(item_id)
    if position is None:
        return "new"
    percentile = float(index.popularity_percentile[position])
    return "very popular" if percentile >= 0.98 else "popular" if percentile >= 0.9 else \
        "known" if percentile >= 0.6 else "niche"


def co_liked_counts(index: LoadedIndex, history: Sequence[str], candidates: Sequence[str]) -> list[int]:
    """For each candidate, how many of the recent history items list it among their co-occurrence
    neighbours (people who liked that history item also liked the candidate)."""
    recent = [index.position[h] for h in list(history)[-HISTORY_SPAN:] if h in index.position]
    columns = [index.position.get(c, -1) for c in candidates]
    if not recent:
        return [0] * len(candidates)
    block = index.cooccurrence[recent].tocsc()
    counts = np.diff(block.indptr)
    return [int(counts[c]) if c >= 0 else 0 for c in columns]


def candidate_facts(index: LoadedIndex, history: Sequence[str], candidates: Sequence[str],
                    attribute_values: int = 3) -> list[str]:
    """One short line of evidence per candidate, e.g. 'Comedy, Drama; popular; co-liked with 3'."""
    counts = co_liked_counts(index, history, candidates)
    facts = []
    for item_id, count in zip(candidates, counts, strict=True):
        parts = []
        shown = index.descriptive_values(item_id)[:attribute_values]
        if shown:
            parts.append(", ".join(str(v) for v in shown))
        parts.append(popularity_word(index, item_id))
        if count:
            parts.append(f"co-liked with {count}")
        facts.append("; ".join(parts))
    return facts


POPULARITY_PHRASES = {"very popular": "one of the most popular {noun}s here", "popular": "a popular {noun} here",
                      "known": "a fairly well-known {noun} here", "niche": "a lesser-known {noun} here",
                      "new": "new here, with no interactions yet"}


def _condition_values(condition: Any) -> tuple[list[Any], list[Any]]:
    """The values a filter condition asks for (plain, $eq, $in, $all; a list inside $all is any one of it) and
    those it rules out ($ne, $nin)."""
    if not isinstance(condition, dict):
        return ([condition] if not isinstance(condition, list) else list(condition)), []
    asked: list[Any] = []
    ruled_out: list[Any] = []
    for op, operand in condition.items():
        values = operand if isinstance(operand, list) else [operand]
        if op in ("$eq", "$in"):
            asked += values
        elif op == "$all":
            asked += [v for value in values for v in (value if isinstance(value, list) else [value])]
        elif op in ("$ne", "$nin"):
            ruled_out += values
    return asked, ruled_out


def _has(value: Any, wanted: Any) -> bool:
    return wanted in value if isinstance(value, list) else value == wanted


def request_facts(index: LoadedIndex, item_id: str, filters: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """What the item satisfies of the request's constraints, checked on the item itself: phrases such as
    'Animation and Comedy, as you asked', 'no Horror', 'from 1994, in the years you asked for', and their
    evidence entries (asked:attribute:value, excluded:attribute:value, year:attribute:value)."""
    entry = index.entries.get(item_id)
    if entry is None or not filters:
        return [], []
    phrases: list[str] = []
    evidence: list[str] = []
    asked_values: list[str] = []
    excluded_values: list[str] = []
    for attribute, condition in filters.items():
        value = entry.attributes.get(attribute)
        if value is None:
            continue
        if isinstance(condition, dict) and any(op in condition for op in ("$gt", "$gte", "$lt", "$lte")):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                shown = int(value) if float(value).is_integer() else value
                label = "the years" if attribute.lower() in {"year", "release_year", "released"} else attribute
                phrases.append(f"from {shown}, in {label} you asked for" if label == "the years"
                               else f"{attribute} {shown}, in the range you asked for")
                evidence.append(f"range:{attribute}:{shown}")
            continue
        asked, ruled_out = _condition_values(condition)
        for wanted in asked:
            if _has(value, wanted) and str(wanted) not in asked_values:
                asked_values.append(str(wanted))
                evidence.append(f"asked:{attribute}:{wanted}")
        for unwanted in ruled_out:
            if not _has(value, unwanted) and str(unwanted) not in excluded_values:
                excluded_values.append(str(unwanted))
                evidence.append(f"excluded:{attribute}:{unwanted}")
    if asked_values:
        phrases.insert(0, f"{' and '.join(asked_values)}, as you asked")
    if excluded_values:
        phrases.insert(1 if asked_values else 0, f"no {' or '.join(excluded_values)}")
    return phrases, evidence


def evidence_for(index: LoadedIndex, item_id: str, history: Sequence[str], query: str | None,
                 filters: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    """A templated reason from the data: the user's own items that co-occur with it, the attribute values it
    shares with them, the request's constraints it satisfies, or how popular it is in the catalog.

    `history` must hold the user's own items only (stored history, liked, mentioned and referred-to items),
    never recommendations they did not react to. The user's words are never quoted back (they may carry
    injected text), and a free-text query alone earns no claim: that the item "matches what you asked for"
    is said only through the constraint it satisfies, named.
    """
    del query  # kept for callers; a query is not evidence by itself
    evidence: list[str] = []
    parts: list[str] = []
    position = index.position.get(item_id)
    related: list[tuple[float, str]] = []
    if position is not None:
        for h in history[-50:]:
            hp = index.position.get(h)
            if hp is not None and h != item_id:
                weight = float(index.cooccurrence[hp, position])
                if weight > 0:
                    related.append((weight, h))
    related.sort(reverse=True)
    picks = [h for _, h in related[:2]]
    if picks:
        names = [natural_title(index.entries[h].title) for h in picks if h in index.entries]
        parts.append("people who liked " + " and ".join(names) + " also liked it")
        evidence += picks
    asked_phrases, asked_evidence = request_facts(index, item_id, filters)
    attribute = index.descriptive_attribute
    values = index.descriptive_values(item_id)  # a list (genres, tags) or one value (a category)
    asked = {e.split(":", 2)[2] for e in asked_evidence if e.startswith("asked:")}
    if values and history:
        counts: Counter[str] = Counter()
        holder: dict[str, str] = {}
        for h in history[-HISTORY_SPAN:]:
            if h == item_id or h not in index.entries:
                continue
            for v in index.descriptive_values(h):
                if v in values and str(v) not in asked:
                    counts[str(v)] += 1
                    holder.setdefault(str(v), h)
        shared = [v for v, _ in counts.most_common(2)]
        if shared:
            named = natural_title(index.entries[holder[shared[0]]].title)
            others = counts[shared[0]] - 1  # the user's other items with that value
            with_whom = named + (f" and {others} more of yours" if others else "")
            parts.append(f"it shares {' and '.join(shared)} with {with_whom}")
            evidence += [f"{attribute}:{v}" for v in shared] + [f"with:{holder[shared[0]]}"]
    parts = asked_phrases + parts
    evidence += asked_evidence
    if not parts:
        parts.append("it is " + POPULARITY_PHRASES[popularity_word(index, item_id)].format(noun=index.noun))
    reason = "; ".join(parts)
    return reason[0].upper() + reason[1:] + ".", evidence
