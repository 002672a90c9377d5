"""Statistics for comparing runs: standard errors, paired bootstrap differences with p-values, position
bias and reply diversity. Pure functions of arrays, so each is tested on constructed cases."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def standard_error(values: Sequence[float] | np.ndarray) -> float:
    """Standard error of the mean (sample standard deviation / sqrt(n)); 0 for fewer than two values."""
    array = np.asarray(values, dtype=np.float64)
    if len(array) < 2:
        return 0.0
    return float(array.std(ddof=1) / math.sqrt(len(array)))


@dataclass(frozen=True)
class PairedDifference:
    """Mean of (variant - baseline) over the same units, its bootstrap interval and two-sided p-value."""

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    units: int

    def significantly_below_zero(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha and self.ci_high < 0

    def significantly_above_zero(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha and self.ci_low > 0

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def paired_bootstrap(baseline: Sequence[float] | np.ndarray, variant: Sequence[float] | np.ndarray,
                     samples: int = 2000, seed: int = 0, level: float = 0.95) -> PairedDifference:
    """Resample units (users, turns, requests) with replacement and keep each unit's pair together.

    The interval is the percentile interval of the resampled mean difference. The p-value tests "no
    difference": the share of resampled means, shifted to centre on zero, that lie at least as far from
    zero as the observed mean ((count + 1) / (samples + 1), so it is never exactly 0).
    """
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(variant, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same shape, got {a.shape} and {b.shape}")
    n = len(a)
    if n == 0:
        return PairedDifference(0.0, 0.0, 0.0, 1.0, 0)
    diff = b - a
    observed = float(diff.mean())
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(samples, n))].mean(axis=1)
    tail = (1.0 - level) / 2
    low, high = float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))
    extreme = int(np.sum(np.abs(means - observed) >= abs(observed) - 1e-12))
    p_value = min(1.0, (extreme + 1) / (samples + 1))
    return PairedDifference(observed, low, high, p_value, n)


@dataclass(frozen=True)
class PositionBias:
    """How the ranker's output depends on where the target stood in the list it was shown.

    `slope` is the least-squares slope of the target's output rank on its input position: 1 when the
    output keeps the input order, 0 when the position does not matter, -1 when it reverses it.
    `mean_rank_by_position[p]` is the target's mean output rank when it stood at position p (None when
    it never did); `first_choice_share[p]` is how often the item at input position p came out first.
    """

    slope: float
    mean_rank_by_position: list[float | None]
    first_choice_share: list[float]
    lists: int

    def as_dict(self) -> dict[str, Any]:
        return {"slope": round(self.slope, 4), "lists": self.lists,
                "mean_rank_by_position": [None if v is None else round(v, 3) for v in self.mean_rank_by_position],
                "first_choice_share": [round(v, 4) for v in self.first_choice_share]}


def position_bias(target_positions: Sequence[int], target_ranks: Sequence[int], first_positions: Sequence[int],
                  list_length: int) -> PositionBias:
    """Positions and ranks are 0-based. `first_positions` holds, per list, the input position of the item
    ranked first (every list, whether or not its target was shown); the other two cover the lists whose
    target was shown."""
    positions = np.asarray(target_positions, dtype=np.float64)
    ranks = np.asarray(target_ranks, dtype=np.float64)
    if len(positions) != len(ranks):
        raise ValueError("one output rank per target position")
    slope = 0.0
    if len(positions) >= 2 and float(np.var(positions)) > 0:
        slope = float(np.cov(positions, ranks, bias=True)[0, 1] / np.var(positions))
    by_position: list[float | None] = []
    for p in range(list_length):
        chosen = ranks[positions == p]
        by_position.append(float(chosen.mean()) if len(chosen) else None)
    firsts = np.bincount(np.asarray(first_positions, dtype=np.int64), minlength=list_length)[:list_length]
    share = (firsts / max(len(first_positions), 1)).tolist()
    return PositionBias(slope, by_position, [float(s) for s in share], len(first_positions))


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams, pooled over the texts (how varied the replies are); 0 when none."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = text.lower().split()
        grams.extend(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0
