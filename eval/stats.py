"""Statistics for comparing runs: standard errors, bootstrap intervals of a mean and of a paired difference
(with p-values), position bias and reply diversity. Pure functions of arrays, so each is tested on
constructed cases.

The one bootstrap is scipy.stats.bootstrap (percentile intervals, units resampled with replacement, pairs kept
together), with a fixed seed so that a run's figures are the same every time it is computed."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

RESAMPLED_VALUES = 2_000_000  # resampled values held at once (a batch of resamples), whatever the unit count


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


def _bootstrap(data: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], samples: int, seed: int,
               level: float) -> tuple[float, float, np.ndarray]:
    """The percentile interval of `statistic` over `samples` resamples of the units, and the resampled values."""
    n = len(data[0])
    result = stats.bootstrap(data, statistic, n_resamples=samples, batch=max(1, RESAMPLED_VALUES // n),
                             vectorized=True, paired=len(data) > 1, confidence_level=level, method="percentile",
                             rng=np.random.default_rng(seed))
    interval = result.confidence_interval
    return float(interval.low), float(interval.high), np.asarray(result.bootstrap_distribution)


def bootstrap_interval(values: Sequence[float] | np.ndarray, samples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling units (users, turns, targets); (0, 0) for none."""
    array = np.asarray(values, dtype=np.float64)
    if len(array) < 2:  # nothing to resample: the interval is the value itself
        value = float(array[0]) if len(array) else 0.0
        return value, value
    low, high, _ = _bootstrap((array,), np.mean, samples, seed, level)
    return low, high


def _mean_difference(baseline: np.ndarray, variant: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.mean(variant - baseline, axis=axis))


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
    observed = float(np.mean(b - a))
    if n == 1:
        return PairedDifference(observed, observed, observed, 1.0, 1)
    low, high, means = _bootstrap((a, b), _mean_difference, samples, seed, level)
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
