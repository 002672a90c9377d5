"""Fast tuning of the fusion weights on the validation split (and the linear ranker's fit: `tune_linear`).

Each sampled user's candidate lists are generated once (every generator at weight 1). Any weighting's
fused ranking of the user's target then follows from those lists by one matrix product: the fused
score of every listed item under every weight setting at once, and the target's rank is the number of
items scoring above it. Users come in batches; after each batch, settings whose paired difference to the
best is more than `drop_z` standard errors below it are dropped (racing), and tuning stops when one
setting is left, when the survivors are within `tolerance` of each other, or at `max_users`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from agent.linear_ranker import conditional_logit, linear_features, linear_pool
from agent.retrieval import BASE_GENERATORS, Ranked, Request, fused, fused_lists, reciprocal_rank_fusion
from agent.settings import LINEAR_FEATURES
from eval.harness import Prepared
from eval.metrics import per_user_metrics


@dataclass(frozen=True)
class Setting:
    weights: dict[str, float]
    rrf_k: float


def weight_grid(grid: dict[str, Sequence[float]], rrf_ks: Sequence[float]) -> list[Setting]:
    names = list(grid)
    settings: list[Setting] = []
    for values in itertools.product(*(grid[n] for n in names)):
        weights = dict(zip(names, (float(v) for v in values), strict=True))
        if any(weights.values()):
            settings.extend(Setting(weights, float(k)) for k in rrf_ks)
    return settings


def target_ranks(lists: dict[str, Ranked], target: str, settings: Sequence[Setting]) -> np.ndarray:
    """The target's 0-based rank in each setting's fused list (ties by item id, as in retrieval's RRF);
    a large number when no generator lists it or a setting gives it no weight."""
    names = sorted(lists)
    items = sorted({i for ranked in lists.values() for i, _ in ranked})
    missing = np.full(len(settings), 10**9)
    if target not in items:
        return missing
    row = {item: r for r, item in enumerate(items)}
    ranks_by_name = np.zeros((len(items), len(names)))  # 1-based rank, 0 = not listed
    for g, name in enumerate(names):
        for rank, (item, _) in enumerate(lists[name], start=1):
            ranks_by_name[row[item], g] = rank
    out = np.empty(len(settings), dtype=np.int64)
    listed = ranks_by_name > 0
    for k in sorted({s.rrf_k for s in settings}):
        contribution = np.where(listed, 1.0 / (k + np.where(listed, ranks_by_name, 1.0)), 0.0)
        chosen = [i for i, s in enumerate(settings) if s.rrf_k == k]
        weights = np.array([[settings[i].weights.get(n, 0.0) for n in names] for i in chosen]).T
        scores = contribution @ weights  # items x settings
        t = scores[row[target]]
        above = (scores > t + 1e-12).sum(axis=0)
        tied_before = ((np.abs(scores - t) <= 1e-12) & (np.array(items) < target)[:, None]).sum(axis=0)
        out[chosen] = np.where(t > 0, above + tied_before, 10**9)
    return out


def metric_from_ranks(ranks: np.ndarray, metric: str) -> np.ndarray:
    name, k = metric.split("@")
    cutoff = int(k)
    inside = ranks < cutoff
    if name == "ndcg":
        return np.where(inside, 1.0 / np.log2(np.minimum(ranks, cutoff) + 2.0), 0.0)
    if name in ("recall", "hit"):
        return inside.astype(np.float64)
    if name == "mrr":
        return np.where(inside, 1.0 / (np.minimum(ranks, cutoff) + 1.0), 0.0)
    raise ValueError(f"unknown metric {metric!r}")


def tune_fusion(prepared: Prepared, grid: dict[str, Sequence[float]], rrf_ks: Sequence[float],
                metric: str = "ndcg@10", progress: bool = True) -> dict[str, Any]:
    """Grid-search fusion weights and the RRF constant on the *validation* split only, every user and every
    setting: the reference `tune_fusion_fast` must agree with."""
    ctx = prepared.agent.recommender.context
    cases = prepared.split.validation
    every = {name: 1.0 for name in grid}
    lists: list[dict[str, Ranked]] = []
    for case in tqdm(cases, desc="generating (validation)", unit="user", disable=not progress):
        request = Request(history=case.history, timestamps=case.timestamps, exclude=frozenset(case.history))
        lists.append(fused_lists(ctx, request, every))
    names = list(grid)
    results = []
    for values in itertools.product(*(grid[n] for n in names)):
        weights = dict(zip(names, values, strict=True))
        if not any(weights.values()):
            continue
        for k in rrf_ks:
            rankings = [[i for i, _ in reciprocal_rank_fusion(per, weights, k, 20)] for per in lists]
            score = float(per_user_metrics(rankings, [{c.target} for c in cases], cutoffs=(10,))[metric].mean())
            results.append((score, weights, k))
    results.sort(key=lambda r: -r[0])
    best_score, best_weights, best_k = results[0]
    return {"metric": metric, "split": "validation", "best": {"score": round(best_score, 5),
            "fusion_weights": best_weights, "rrf_k": best_k},
            "top5": [{"score": round(s, 5), "fusion_weights": w, "rrf_k": k} for s, w, k in results[:5]],
            "generators": sorted(BASE_GENERATORS)}


def tune_fusion_fast(prepared: Prepared, grid: dict[str, Sequence[float]], rrf_ks: Sequence[float],
                     metric: str = "ndcg@10", max_users: int = 2000, batch: int = 200, drop_z: float = 3.0,
                     tolerance: float = 0.002, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Race the weight settings on sampled validation users; see the module docstring."""
    started = time.perf_counter()
    ctx = prepared.agent.recommender.context
    cases = prepared.split.validation
    order = np.random.default_rng(seed).permutation(len(cases))[:max_users]
    settings = weight_grid(grid, rrf_ks)
    every = {name: 1.0 for name in grid}
    alive = np.ones(len(settings), dtype=bool)
    values: list[np.ndarray] = []
    reason = "every sampled user was used"
    bar = tqdm(total=len(order), desc="tuning (validation)", unit="user", disable=not progress)
    for start in range(0, len(order), batch):
        for position in order[start:start + batch]:
            case = cases[int(position)]
            request = Request(history=case.history, timestamps=case.timestamps, exclude=frozenset(case.history))
            values.append(metric_from_ranks(target_ranks(fused_lists(ctx, request, every), case.target, settings),
                                            metric))
            bar.update(1)
        matrix = np.vstack(values)
        means = matrix.mean(axis=0)
        best = int(np.argmax(np.where(alive, means, -np.inf)))
        diffs = matrix - matrix[:, [best]]
        errors = diffs.std(axis=0, ddof=1) / np.sqrt(len(matrix)) if len(matrix) > 1 else np.zeros(len(settings))
        alive &= ~(diffs.mean(axis=0) < -drop_z * np.maximum(errors, 1e-12))
        alive[best] = True
        bar.set_postfix(best=f"{means[best]:.4f}", alive=int(alive.sum()))
        if alive.sum() == 1:
            reason = "one setting was left"
            break
        if float(means[alive].max() - means[alive].min()) <= tolerance and len(matrix) >= 2 * batch:
            reason = f"the remaining settings were within {tolerance} of each other"
            break
    bar.close()
    matrix = np.vstack(values)
    means = matrix.mean(axis=0)
    ranked = sorted(np.flatnonzero(alive), key=lambda i: -means[i])
    best = int(ranked[0])
    return {"metric": metric, "split": "validation", "users": len(matrix), "users_available": len(cases),
            "settings_tried": len(settings), "settings_left": int(alive.sum()), "stopped_because": reason,
            "seconds": round(time.perf_counter() - started, 2),
            "best": {"score": round(float(means[best]), 5), "fusion_weights": settings[best].weights,
                     "rrf_k": settings[best].rrf_k,
                     "se": round(float(matrix[:, best].std(ddof=1) / np.sqrt(len(matrix))), 5)
                     if len(matrix) > 1 else 0.0},
            "top5": [{"score": round(float(means[i]), 5), "fusion_weights": settings[i].weights,
                      "rrf_k": settings[i].rrf_k} for i in ranked[:5]],
            "generators": sorted(BASE_GENERATORS)}


def list_ndcg(scores: np.ndarray, targets: np.ndarray, k: int = 10) -> np.ndarray:
    """ndcg@k of each list's target under `scores` (lists x items); ties count against the target."""
    ranks = (scores >= scores[np.arange(len(targets)), targets][:, None]).sum(axis=1) - 1
    return metric_from_ranks(ranks, f"ndcg@{k}")


def tune_linear(prepared: Prepared, l2s: Sequence[float] = (1e-3, 1e-2, 1e-1), folds: int = 5, max_users: int = 2000,
                seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """The linear ranker's weights (agent.linear_ranker) fitted on the validation split's fixed candidate
    lists (candidates20) by a conditional logit. The L2 strength is chosen by `folds`-fold cross-validation
    on the same users, whose held-out ndcg@10 is reported next to the fused ranker's on the same lists (the
    fused weights were not chosen on these lists, so the comparison is fair); the weights returned are
    refitted on every sampled user and mapped back to the raw feature scale."""
    started = time.perf_counter()
    recommender = prepared.agent.recommender
    ctx = recommender.context
    cases = [c for c in prepared.split.validation if c.candidates]
    if not cases:
        raise ValueError("the linear ranker is fitted on fixed candidate lists (protocol candidates20)")
    order = np.random.default_rng(seed).permutation(len(cases))[:max_users]
    rows, targets, fused_ndcg = [], [], []
    for position in tqdm(order, desc="features (validation)", unit="user", disable=not progress):
        case = cases[int(position)]
        request = recommender.request(history=case.history, timestamps=case.timestamps, only=case.candidates)
        pool = linear_pool(ctx, request, len(case.candidates or []))  # the list in fused order, as the ranker sees it
        rows.append(linear_features(ctx, request, pool))
        targets.append(pool.index(case.target))
        fused_order = [item for item, _ in fused(ctx, request, len(pool))]
        fused_rank = fused_order.index(case.target) if case.target in fused_order else len(pool)
        fused_ndcg.append(metric_from_ranks(np.array([fused_rank]), "ndcg@10")[0])
    features, target = np.stack(rows), np.array(targets)
    flat = features.reshape(-1, features.shape[-1])
    mean, scale = flat.mean(axis=0), flat.std(axis=0)
    scale[scale == 0] = 1.0
    standard = (features - mean) / scale
    fold = np.random.default_rng(seed).permutation(len(target)) % folds
    held_out: dict[str, float] = {}
    for l2 in l2s:
        values = np.zeros(len(target))
        for f in range(folds):
            w = conditional_logit(standard[fold != f], target[fold != f], l2)
            values[fold == f] = list_ndcg(standard[fold == f] @ w, target[fold == f])
        held_out[str(l2)] = round(float(values.mean()), 5)
    best = max(l2s, key=lambda l2: held_out[str(l2)])
    weights = conditional_logit(standard, target, best) / scale  # a shift by the mean is the same in every list
    return {"metric": "ndcg@10", "split": "validation", "users": len(target), "users_available": len(cases),
            "folds": folds, "l2": best, "cross_validated": held_out,
            "fused": round(float(np.mean(fused_ndcg)), 5), "seconds": round(time.perf_counter() - started, 2),
            "linear_weights": {name: float(f"{w:.6g}") for name, w in zip(LINEAR_FEATURES, weights, strict=True)
                               if w != 0.0}}
