"""Candidate generators and their fusion.

Each generator maps a request to a ranked list of (item id, score), already without excluded items and
restricted to items passing the filters. The fused generator combines the others by weighted
reciprocal rank fusion. Generators are looked up by exact name in GENERATORS.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from agent.catalog import CatalogEntry, LoadedIndex
from agent.settings import (
    GENERATOR_EVIDENCE,
    ITEM_FEATURES,
    LINEAR_FEATURES,
    LINEAR_GENERATORS,
    NEARBY_DECAY,
    NEARBY_SCALE,
    RetrievalConfig,
)
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


def fused(ctx: Context, request: Request, n: int) -> Ranked:
    weights = fusion_weights(ctx, request)
    ranked = reciprocal_rank_fusion(fused_lists(ctx, request, weights), weights, ctx.config.rrf_k, n)
    if len(ranked) < n:  # top up with popular items so a request never comes back short
        seen = {i for i, _ in ranked} | set(request.exclude)
        extra = popularity(ctx, Request(exclude=frozenset(seen), allowed=request.allowed), n - len(ranked))
        ranked += [(i, 0.0) for i, _ in extra]
    return ranked


DAY = 86_400  # seconds: interaction timestamps are Unix seconds
YEAR = 365.2425 * DAY
HISTORY_DECAY = 0.95  # history.cooccurrence's weight per item back (chosen among 0.9-1.0 on candidates20 validation)


def _year(entry: CatalogEntry | None) -> int | None:
    value = entry.attributes.get("year") if entry is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def item_features(ctx: Context, request: Request, pool: Sequence[str], wanted: frozenset[str] | None = None
                  ) -> np.ndarray:
    """What the linear ranker reads of each item of `pool` itself (ITEM_FEATURES, as columns), at the request's
    time (its latest timestamp; the index's latest interaction without one, i.e. now):
    - popularity.log: log(1 + interactions), over the whole indexed (training) part, as the popularity
      generator counts: in a replayed history this includes other users' interactions after the request's time
      (so does the co-occurrence graph, below, and every generator's model);
    - time.recent30 / time.recent365 / time.before: log(1 + interactions in the 30 / 365 days before that time,
      and ever before it): what was popular then (a replayed history) or is now (a chat);
    - time.seen: whether anyone had it before then; time.age / time.last: log(1 + days since its first / its
      latest interaction up to then) (0 for an item nobody had yet);
    - year.released: its "year" attribute is not after that time's year; year.new: it is that year or the
      one before; year.age: log(1 + years since); year.distance: years from the history's mean year / 10;
    - attribute.match: the history's weight on the item's descriptive values (genres, tags), each history item
      spreading weight 1 over its own values, as a share of the history's total, averaged over the item's
      values (an item with many values does not match everything);
    - history.cooccurrence: log(1 + the sum of its cosine co-occurrence (the item-to-item graph) with every
      history item, weighted 0.95 per item back from the latest); the item2item generator reads the latest few;
    - history.nearby: log(1 + NEARBY_SCALE x the sum of its session co-occurrence (LoadedIndex.nearby: the two
      within NEARBY_WINDOW positions of each other in someone's history, cosine-weighted, every pair kept) with
      every history item, weighted NEARBY_DECAY per item back). The weak links count: kept to the top 100 per
      item, as history.cooccurrence's graph is, it adds a fifth of what it adds whole. Read only when `wanted`
      (None: every feature) has it.
    The time.* columns count only the indexed interactions up to the request's time, and year.* reads only that
    time's year. Both stay 0 on an index whose timestamps are an order, not times (Last.fm's file order,
    ReDial's turns, a generic file without a timestamp column), or without any interactions; year.distance,
    which reads no time, stays."""
    index = ctx.index
    out = np.zeros((len(pool), len(ITEM_FEATURES)))
    if not pool:
        return out
    column = {name: k for k, name in enumerate(ITEM_FEATURES)}
    times_of = [column[f] for f in ("time.recent30", "time.recent365", "time.before", "time.seen", "time.age",
                                    "time.last")]
    dated_year = [column[f] for f in ("year.released", "year.new", "year.age")]
    positions = np.array([index.position[i] for i in pool])
    out[:, column["popularity.log"]] = np.log1p(index.popularity[positions])
    # an order, not a time, dates nothing: now 0, as for an index without interactions (read no history for it)
    now = (max(request.timestamps) if request.timestamps else index.latest_time) if index.timed else 0
    if now > 0:
        starts, times = index.interaction_times
        for row, p in enumerate(positions):
            stamps = times[starts[p]:starts[p + 1]]
            before = int(np.searchsorted(stamps, now, side="right"))
            recent = [before - int(np.searchsorted(stamps, now - days * DAY, side="left")) for days in (30, 365)]
            since = np.log1p((now - stamps[[0, before - 1]]) / DAY) if before else (0.0, 0.0)
            out[row, times_of] = (*np.log1p(recent), np.log1p(before), float(before > 0), *since)
    this_year = 1970 + math.floor(now / YEAR) if now > 0 else None
    years = [y for y in (_year(index.entries.get(i)) for i in request.history) if y is not None]
    mean_year = float(np.mean(years)) if years else None
    profile: dict[Any, float] = {}
    for item in request.history:
        values = index.descriptive_values(item)
        for value in values:
            profile[value] = profile.get(value, 0.0) + 1.0 / len(values)
    total = sum(profile.values())
    for row, item in enumerate(pool):
        year = _year(index.entries.get(item))
        if year is not None and this_year is not None:
            out[row, dated_year] = (float(year <= this_year), float(this_year - 1 <= year <= this_year),
                                    np.log1p(max(0, this_year - year)))
        if year is not None and mean_year is not None:
            out[row, column["year.distance"]] = abs(year - mean_year) / 10
        values = index.descriptive_values(item)
        if values and total:
            out[row, column["attribute.match"]] = sum(profile.get(v, 0.0) for v in values) / total / len(values)
    history = [index.position[i] for i in request.history if i in index.position]
    if history:
        back = HISTORY_DECAY ** np.arange(len(history) - 1, -1, -1)
        out[:, column["history.cooccurrence"]] = np.log1p(back @ index.cooccurrence[history][:, positions].toarray())
        if wanted is None or "history.nearby" in wanted:
            back = NEARBY_DECAY ** np.arange(len(history) - 1, -1, -1)
            near = back @ index.nearby[history][:, positions].toarray()
            out[:, column["history.nearby"]] = np.log1p(NEARBY_SCALE * near)
    return out


def linear_features(ctx: Context, request: Request, pool: Sequence[str], wanted: frozenset[str] | None = None
                    ) -> np.ndarray:
    """The linear ranker's features (LINEAR_FEATURES, as columns) of each item of `pool` (rows): per base
    generator, its own score ("<g>.score", 0 where it does not list the item), whether it lists the item
    ("<g>.found") and its rank as 20 / (21 + rank) ("<g>.rank", 0 where unlisted); then the item's own
    (item_features). A generator none of whose features is `wanted` is not run (its columns stay 0), nor are
    the item's time, year, attribute and co-occurrence features read unless one is wanted, nor the nearby
    graph built unless history.nearby is."""
    out = np.zeros((len(pool), len(LINEAR_FEATURES)))
    if not pool:
        return out
    kinds = len(GENERATOR_EVIDENCE)
    restricted = Request(request.history, request.timestamps, request.query, request.exclude, frozenset(pool))
    for g, name in enumerate(LINEAR_GENERATORS):
        if wanted is not None and not any(f"{name}.{kind}" in wanted for kind in GENERATOR_EVIDENCE):
            continue
        ranked = BASE_GENERATORS[name](ctx, restricted, len(pool))
        listed = {item: (rank, score) for rank, (item, score) in enumerate(ranked)}
        for row, item in enumerate(pool):
            if item in listed:
                rank, score = listed[item]
                out[row, kinds * g:kinds * g + kinds] = (score, 1.0, 20.0 / (21.0 + rank))
    first = kinds * len(LINEAR_GENERATORS)
    if wanted is None or wanted & set(ITEM_FEATURES[1:]):
        out[:, first:] = item_features(ctx, request, pool, wanted)
    else:
        out[:, first] = np.log1p(ctx.index.popularity[[ctx.index.position[i] for i in pool]])
    return out


def warm_linear(ctx: Context) -> None:
    """Read now what the linear ranker's weights read lazily (the stored histories' dates, the nearby graph),
    so that no user's request pays for it and concurrent first requests do not build it twice."""
    wanted = {f for f, w in ctx.config.linear_weights.items() if w}
    if wanted & set(ITEM_FEATURES[1:]):  # linear_features' own test: item_features dates the request by them
        _ = ctx.index.latest_time  # reads interaction_times
    if "history.nearby" in wanted:
        _ = ctx.index.nearby


def linear_pool(ctx: Context, request: Request, n: int) -> list[str]:
    """What the linear ranker orders: the fused top n, then any allowed item fused leaves out (one no generator
    lists and nobody rated in the training part), by id, so that a fixed list is ranked whole."""
    pool = [item for item, _ in fused(ctx, request, n)]
    if request.allowed is not None and len(request.allowed) <= n:
        listed = set(pool)
        pool += sorted(i for i in request.allowed if i not in listed and i not in request.exclude
                       and i in ctx.index.position)
    return pool


def linear(ctx: Context, request: Request, n: int) -> Ranked:
    """The fused top `pool` (every allowed item, for a fixed list shorter than that) ordered by a weighted sum of
    the generators' own evidence (`retrieval.linear_weights` over LINEAR_FEATURES), which `recagent tune
    --protocol candidates20` fits on the validation split. Reciprocal rank fusion sees only ranks, and the
    score-only generators (item2item, sequential) leave most of a random list unranked; a fitted sum of scores,
    ranks and popularity separates such a list better. Without weights this is `fused`."""
    weights = ctx.config.linear_weights
    if not weights:
        return fused(ctx, request, n)
    pool = linear_pool(ctx, request, max(ctx.config.pool, n))
    vector = np.array([weights.get(f, 0.0) for f in LINEAR_FEATURES])
    scores = linear_features(ctx, request, pool, frozenset(f for f, w in weights.items() if w)) @ vector
    order = sorted(range(len(pool)), key=lambda k: (-scores[k], k))[:n]  # ties keep the fused order
    return [(pool[k], float(scores[k])) for k in order]


GENERATORS: dict[str, Generator] = {**BASE_GENERATORS, "fused": fused, "linear": linear}
