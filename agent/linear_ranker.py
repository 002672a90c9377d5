"""The linear ranker: the fused top `pool` ordered by a weighted sum of 29 features (LINEAR_FEATURES in
agent.settings): each base generator's own score, whether it lists the item and its rank, and what the index
knows of the item itself at the request's time (popularity, recency, release year, attribute match, the
history's co-occurrence graphs). The weights come from `conditional_logit`, fitted by `recagent tune --protocol
candidates20` (eval.tuning.tune_linear) on the validation split's fixed candidate lists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.catalog import CatalogEntry
from agent.retrieval import BASE_GENERATORS, Context, Ranked, Request, fused
from agent.settings import (
    GENERATOR_EVIDENCE,
    ITEM_FEATURES,
    LINEAR_FEATURES,
    LINEAR_GENERATORS,
    NEARBY_DECAY,
    NEARBY_SCALE,
)

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


def conditional_logit(features: np.ndarray, targets: np.ndarray, l2: float) -> np.ndarray:
    """Weights w maximising the mean log-softmax of each list's target under scores features @ w, minus
    l2 * |w|^2 (features: lists x items x features, standardised; targets: the target's row in each list)."""
    from scipy.optimize import minimize

    lists = np.arange(len(targets))

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        scores = features @ w
        top = scores.max(axis=1, keepdims=True)
        probs = np.exp(scores - top)
        total = probs.sum(axis=1, keepdims=True)
        probs /= total
        value = float(np.mean(np.log(total[:, 0]) + top[:, 0] - scores[lists, targets])) + l2 * float(w @ w)
        gradient = np.mean(np.einsum("li,lif->lf", probs, features) - features[lists, targets], axis=0) + 2 * l2 * w
        return value, gradient

    return np.asarray(minimize(loss, np.zeros(features.shape[-1]), jac=True, method="L-BFGS-B").x)
