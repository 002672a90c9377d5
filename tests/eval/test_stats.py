"""The comparison statistics on constructed cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from eval.stats import bootstrap_interval, distinct_n, paired_bootstrap, position_bias, standard_error


def test_standard_error_closed_form() -> None:
    values = [0.0, 1.0, 0.0, 1.0]
    assert standard_error(values) == pytest.approx(np.std(values, ddof=1) / 2)
    assert standard_error([1.0]) == 0.0


def test_the_interval_of_a_mean_is_the_binomial_one() -> None:
    """100 units, 20 of them 1: a resampled mean is Binomial(100, 0.2) / 100, so the 95% percentile interval is
    that distribution's 2.5% and 97.5% quantiles, 0.12 and 0.28."""
    values = np.array([0.0] * 80 + [1.0] * 20)
    assert (binom.ppf(0.025, 100, 0.2) / 100, binom.ppf(0.975, 100, 0.2) / 100) == (0.12, 0.28)
    low, high = bootstrap_interval(values, samples=20000, seed=1)
    assert low == pytest.approx(0.12, abs=0.0101) and high == pytest.approx(0.28, abs=0.0101)
    assert bootstrap_interval(values, samples=20000, seed=1) == (low, high)  # a fixed seed: the same figures
    assert bootstrap_interval(np.ones(10)) == (1.0, 1.0) and bootstrap_interval([0.5]) == (0.5, 0.5)
    assert bootstrap_interval([]) == (0.0, 0.0)


def test_a_paired_interval_is_the_interval_of_the_differences() -> None:
    """Keeping pairs together resamples the per-unit differences: the same interval, resample for resample."""
    rng = np.random.default_rng(5)
    base, variant = rng.random(60), rng.random(60)
    d = paired_bootstrap(base, variant, samples=3000, seed=7)
    assert (d.ci_low, d.ci_high) == pytest.approx(bootstrap_interval(variant - base, samples=3000, seed=7))
    assert d.mean == pytest.approx(float(np.mean(variant - base))) and d.units == 60


def test_identical_variants_differ_by_nothing() -> None:
    a = np.random.default_rng(1).random(50)
    d = paired_bootstrap(a, a.copy())
    assert (d.mean, d.ci_low, d.ci_high, d.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not d.significantly_below_zero() and not d.significantly_above_zero()


def test_a_constant_shift_is_certain() -> None:
    a = np.random.default_rng(2).random(30)
    d = paired_bootstrap(a, a - 0.25, samples=999)
    assert d.mean == pytest.approx(-0.25) and d.ci_low == pytest.approx(-0.25) and d.ci_high == pytest.approx(-0.25)
    assert d.p_value == pytest.approx(1 / 1000)  # the smallest p the bootstrap can give
    assert d.significantly_below_zero()


def test_pairing_removes_the_units_own_variance() -> None:
    """Units differ wildly but the variant is always a bit better: paired, that is clear; unpaired it would not be."""
    rng = np.random.default_rng(3)
    base = rng.normal(0, 10, size=40)
    variant = base + 0.1 + rng.normal(0, 0.01, size=40)
    d = paired_bootstrap(base, variant)
    assert d.significantly_above_zero() and d.ci_low > 0.09


def test_p_value_matches_the_normal_approximation() -> None:
    """n = 400 differences with mean 0.1 and sd 1: z = 2, two-sided p = 0.0455."""
    rng = np.random.default_rng(4)
    noise = rng.normal(0, 1, size=400)
    diff = (noise - noise.mean()) / noise.std(ddof=0) + 0.1
    d = paired_bootstrap(np.zeros(400), diff, samples=20000)
    assert d.p_value == pytest.approx(math.erfc(2 / math.sqrt(2)), abs=0.012)
    assert d.ci_low == pytest.approx(0.1 - 1.96 * 0.05, abs=0.01) and d.ci_high == pytest.approx(0.1 + 1.96 * 0.05,
                                                                                                   abs=0.01)


def test_position_bias_of_order_keeping_and_reversing_rankers() -> None:
    positions = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    keep = position_bias(positions, positions, [0] * 10, 5)
    assert keep.slope == pytest.approx(1.0)
    assert keep.mean_rank_by_position == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert keep.first_choice_share == [1.0, 0.0, 0.0, 0.0, 0.0]
    reverse = position_bias(positions, [4 - p for p in positions], [4] * 10, 5)
    assert reverse.slope == pytest.approx(-1.0) and reverse.first_choice_share[4] == 1.0


def test_position_bias_without_dependence() -> None:
    """Every position gets every rank once: the slope is 0 and each mean rank is the middle one."""
    positions = [p for p in range(4) for _ in range(4)]
    ranks = [r for _ in range(4) for r in range(4)]
    bias = position_bias(positions, ranks, [0, 1, 2, 3] * 4, 4)
    assert bias.slope == pytest.approx(0.0)
    assert bias.mean_rank_by_position == [1.5, 1.5, 1.5, 1.5]
    assert bias.first_choice_share == [0.25] * 4
    assert position_bias([1], [0], [1], 3).mean_rank_by_position == [None, 0.0, None]


def test_distinct_n() -> None:
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)  # ab, bc, ab, bd
    assert distinct_n(["same words here", "same words here"], 2) == pytest.approx(0.5)
    assert distinct_n(["one"], 2) == 0.0
