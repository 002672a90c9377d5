"""Evidence about a candidate, taken from the index: what the reranker's prompt may show next to a
title, and the templated reason given to the user. Everything here is data the retriever already has."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from agent.catalog import LoadedIndex

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


def evidence_for(index: LoadedIndex, item_id: str, history: Sequence[str], query: str | None
                 ) -> tuple[str, list[str]]:
    """A templated reason from the data: related history items (co-occurrence) and shared attributes.

    The user's own words are never quoted back (they may carry injected text); 'query' in the
    evidence list only records that the item was retrieved for a request.
    """
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
    attribute = index.descriptive_attribute
    values = index.descriptive_values(item_id)  # a list (genres, tags) or one value (a category)
    if values and history:
        counts: Counter[str] = Counter()
        for h in history[-HISTORY_SPAN:]:
            counts.update(str(v) for v in index.descriptive_values(h) if v in values)
        shared = [v for v, _ in counts.most_common(2)]
        if shared:
            parts.append(f"it shares {' and '.join(shared)} with {index.noun}s you liked")
            evidence += [f"{attribute}:{v}" for v in shared]
    if query:
        parts.append("it matches what you asked for")
        evidence.append("query")
    if not parts:
        parts.append(f"it is a {popularity_word(index, item_id)} {index.noun} among people with taste close to yours")
    reason = "; ".join(parts)
    return reason[0].upper() + reason[1:] + ".", evidence
