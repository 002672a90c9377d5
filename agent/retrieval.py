"""Candidate generators and their fusion.

Each generator maps a request to a ranked list of (item id, score), already without excluded items and
restricted to items passing the filters. The fused generator combines the others by weighted
reciprocal rank fusion; the linear ranker (agent.linear_ranker) orders the fused list by a fitted weighted
sum of the generators' evidence. agent.recommender looks every ranker up by exact name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from agent.catalog import LoadedIndex
from agent.settings import RetrievalConfig
from index.collab import time_groups
from index.store import Space

Ranked = list[tuple[str, float]]


@dataclass(frozen=True)
class Request:
    """What to retrieve for. `history` is oldest first; `timestamps`, when given, align with it."""

    history: Sequence[str] = ()
    timestamps: Sequence[int] | None = None
    query: str | None = None
    exclude: frozenset[str] = frozenset()
    allowed: frozenset[str] | None = None  # None: every item


class QueryEncoder(Protocol):
    def encode_query(self, text: str) -> np.ndarray:
        """A normalised text vector in the index's text space."""
        ...

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised vectors of several texts at once (one batch), as rows."""
        ...


@dataclass
class Context:
    """What every generator reads: the loaded index, the retrieval settings and a text encoder."""

    index: LoadedIndex
    config: RetrievalConfig
    encoder: QueryEncoder | None = None
    # other datasets' knowledge over this catalog (index.transfer), by source name: their generators
    # are named "<source>.<generator>" in the fusion weights, e.g. "ml-latest-small.collab"
    sources: dict[str, Context] = field(default_factory=dict)

    def groups(self, request: Request) -> list[np.ndarray]:
        """The history's time groups (items sharing a timestamp), oldest first."""
        known = [(self.index.position[i], t) for i, t in
                 zip(request.history, request.timestamps or range(len(request.history)), strict=True)
                 if i in self.index.position]
        if not known:
            return []
        pos, times = zip(*known, strict=True)
        return time_groups(np.asarray(pos), np.asarray(times))


def _vector_query(ctx: Context, space: Space, vector: np.ndarray, request: Request, n: int) -> Ranked:
    if not np.any(vector):
        return []
    restrict = sorted(request.allowed) if request.allowed is not None else None
    fetch = n + len(request.exclude)
    hits = ctx.index.store.nearest(space, vector[None, :], fetch, ids=restrict)[0]
    return [(h.id, h.score) for h in hits if h.id not in request.exclude][:n]


def group_weights(groups: list[np.ndarray], decay: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions of a history and their weights: decay ** (time groups back), most recent group 1."""
    if not groups:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    positions = np.concatenate(groups)
    weights = np.concatenate([np.full(len(g), decay ** (len(groups) - 1 - k)) for k, g in enumerate(groups)])
    return positions, weights


def _top_sparse(ctx: Context, request: Request, positions: np.ndarray, values: np.ndarray, n: int) -> Ranked:
    """Items ranked by score (ties by position) among `positions`, the only items with a score (a few rows
    of an item-to-item graph), without the excluded ones and outside the filters: the work grows with the
    candidates, not with the catalog."""
    positions, values = np.asarray(positions, dtype=np.int64), np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values) & (values > 0)
    if request.exclude:
        banned = np.fromiter((ctx.index.position[i] for i in request.exclude if i in ctx.index.position), np.int64)
        keep &= ~np.isin(positions, banned)
    if request.allowed is not None:
        allowed = np.fromiter((ctx.index.position[i] for i in request.allowed if i in ctx.index.position), np.int64)
        keep &= np.isin(positions, allowed)
    positions, values = positions[keep], values[keep]
    order = np.lexsort((positions, -values))[:n]
    ids = ctx.index.ids
    return [(ids[p], float(values[k])) for k, p in zip(order, positions[order], strict=True)]


def _row_sum(matrix: sp.csr_matrix, rows: np.ndarray, weight: float = 1.0) -> sp.csr_matrix:
    """weight x the sum of some rows, kept sparse (1 x items)."""
    return sp.csr_matrix(np.full((1, len(rows)), weight, dtype=np.float32)) @ matrix[rows]


def popularity(ctx: Context, request: Request, n: int) -> Ranked:
    """The most popular items, walking a precomputed order (or ranking the allowed ones)."""
    scores = ctx.index.popularity
    if request.allowed is not None:
        positions = np.fromiter((ctx.index.position[i] for i in request.allowed if i in ctx.index.position),
                                np.int64)
        return _top_sparse(ctx, request, positions, scores[positions], n)
    out: Ranked = []
    for p in ctx.index.popularity_order:
        if scores[p] <= 0 or len(out) == n:
            break
        item = ctx.index.ids[p]
        if item not in request.exclude:
            out.append((item, float(scores[p])))
    return out


def item2item(ctx: Context, request: Request, n: int) -> Ranked:
    """Co-occurrence cosine similarity summed over the most recent items (whole time groups)."""
    recent: list[np.ndarray] = []
    for group in reversed(ctx.groups(request)):
        if sum(len(g) for g in recent) >= ctx.config.recent_items:
            break
        recent.append(group)
    if not recent:
        return []
    summed = _row_sum(ctx.index.cooccurrence, np.concatenate(recent))
    return _top_sparse(ctx, request, summed.indices, summed.data, n)


def sequential(ctx: Context, request: Request, n: int) -> Ranked:
    """Next-item transitions from the last few time groups, each group weighted by recency."""
    groups = ctx.groups(request)[-ctx.config.sequence_groups:]
    if not groups:
        return []
    total = sp.csr_matrix((1, len(ctx.index.ids)), dtype=np.float32)
    for back, group in enumerate(reversed(groups)):
        total = total + _row_sum(ctx.index.transitions, group, 0.7 ** back / np.sqrt(len(group)))
    return _top_sparse(ctx, request, total.indices, total.data, n)


def collab(ctx: Context, request: Request, n: int) -> Ranked:
    """EASE through its factorisation: one inner-product query on the collaborative vectors."""
    positions, weights = group_weights(ctx.groups(request), ctx.config.recency_decay)
    if len(positions) == 0:
        return []
    vector = weights @ ctx.index.query_vectors[positions]
    return _vector_query(ctx, "collab", vector, request, n)


def text(ctx: Context, request: Request, n: int) -> Ranked:
    """Dense text similarity to the query and/or to the recent history's item texts."""
    vectors = []
    if request.query and ctx.encoder is not None:
        vectors.append(ctx.encoder.encode_query(request.query))
    recent = [i for i in list(request.history)[-ctx.config.recent_items:] if i in ctx.index.text_vectors]
    if recent:
        mean = np.mean([ctx.index.text_vectors[i] for i in recent], axis=0)
        vectors.append(mean / (np.linalg.norm(mean) or 1.0))
    if not vectors:
        return []
    return _vector_query(ctx, "text", np.sum(vectors, axis=0), request, n)


Generator = Callable[[Context, Request, int], Ranked]

BASE_GENERATORS: dict[str, Generator] = {
    "popularity": popularity,
    "item2item": item2item,
    "sequential": sequential,
    "collab": collab,
    "text": text,
}


def reciprocal_rank_fusion(lists: dict[str, Ranked], weights: dict[str, float], k: float, n: int) -> Ranked:
    scores: dict[str, float] = {}
    for name, ranked in lists.items():
        weight = weights.get(name, 0.0)
        if weight <= 0:
            continue
        for rank, (item_id, _) in enumerate(ranked, start=1):
            scores[item_id] = scores.get(item_id, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def generate(ctx: Context, name: str, request: Request, n: int) -> Ranked:
    """A base generator by name, on this index or, for "<source>.<generator>", on a source's index
    (nothing when the index has no such source)."""
    source, _, generator = name.rpartition(".")
    target = ctx.sources.get(source) if source else ctx
    return BASE_GENERATORS[generator](target, request, n) if target is not None else []


def fused_lists(ctx: Context, request: Request, weights: dict[str, float]) -> dict[str, Ranked]:
    pool = ctx.config.pool
    return {name: generate(ctx, name, request, pool) for name, w in weights.items() if w > 0}


def fusion_weights(ctx: Context, request: Request) -> dict[str, float]:
    """The configured weights when there is a history; a free-text query leans on text; else popularity."""
    weights = dict(ctx.config.fusion_weights)
    if request.query:
        weights["text"] = max(weights.get("text", 0.0), ctx.config.query_weight)
    if not request.history:
        weights = {"text": weights.get("text", 0.0) if request.query else 0.0, "popularity": 0.2}
    return weights


QUALITY_PRIOR_HEAD = 30  # text matches a cold request's popularity prior reorders...
QUALITY_PRIOR_WEIGHT = 1.0  # ...and its weight in the fusion (chosen by reading cold requests' results)


def quality_prior(ctx: Context, text_ranked: Ranked) -> Ranked:
    """The best text matches ordered by popularity among the catalog's interactions (ties by text rank): for a
    request with a query and no history, so that what a knowledgeable person would name comes first among
    the items whose words match, and no popular item unrelated to the words joins them."""
    head = text_ranked[:QUALITY_PRIOR_HEAD]
    scores = ctx.index.popularity
    return sorted(head, key=lambda hit: -float(scores[ctx.index.position[hit[0]]]) if hit[0] in ctx.index.position
                  else 0.0)


def fused(ctx: Context, request: Request, n: int) -> Ranked:
    weights = fusion_weights(ctx, request)
    lists = fused_lists(ctx, request, weights)
    if request.query and not request.history and lists.get("text"):
        lists["popularity"] = quality_prior(ctx, lists["text"])
        weights["popularity"] = QUALITY_PRIOR_WEIGHT
    ranked = reciprocal_rank_fusion(lists, weights, ctx.config.rrf_k, n)
    if len(ranked) < n:  # top up with popular items so a request never comes back short
        seen = {i for i, _ in ranked} | set(request.exclude)
        extra = popularity(ctx, Request(exclude=frozenset(seen), allowed=request.allowed), n - len(ranked))
        ranked += [(i, 0.0) for i, _ in extra]
    return ranked
