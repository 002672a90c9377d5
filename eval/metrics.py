"""Top-k ranking metrics with binary relevance. Pure functions of a ranked list and a relevant set."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence

import numpy as np

from eval.stats import bootstrap_interval

Metric = Callable[[Sequence[str], Collection[str], int], float]


def hit_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    return 1.0 if any(item in relevant for item in ranked[:k]) else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    if not relevant:
        return 0.0
    return sum(1 for item in ranked[:k] if item in relevant) / len(relevant)


def mrr_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    for rank, item in enumerate(ranked[:k], start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    dcg = sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(ranked[:k], start=1) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


METRICS: dict[str, Metric] = {"recall": recall_at_k, "ndcg": ndcg_at_k, "mrr": mrr_at_k, "hit": hit_at_k}
CUTOFFS = (5, 10, 20)


def per_user_metrics(rankings: Sequence[Sequence[str]], targets: Sequence[Collection[str]],
                     cutoffs: Sequence[int] = CUTOFFS) -> dict[str, np.ndarray]:
    """{'recall@10': array over users, ...} for every metric and cutoff."""
    out: dict[str, np.ndarray] = {}
    for k in cutoffs:
        for name, fn in METRICS.items():
            out[f"{name}@{k}"] = np.array([fn(r, t, k) for r, t in zip(rankings, targets, strict=True)])
    return out


def summarize(per_user: dict[str, np.ndarray], samples: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Each metric's mean over users and its 95% bootstrap interval (eval.stats.bootstrap_interval)."""
    summary = {}
    for key, values in per_user.items():
        low, high = bootstrap_interval(values, samples, seed)
        summary[key] = {"mean": float(values.mean()) if len(values) else 0.0, "ci_low": low, "ci_high": high}
    return summary
