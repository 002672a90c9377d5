"""The comparison statistics on constructed cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval.stats import distinct_n, paired_bootstrap, position_bias, standard_error


def test_standard_error_closed_form() -> None:
    values = [0.0, 1.0, 0.0, 1.0]
    assert standard_error(values) == pytest.approx(np.std(values, ddof=1) / 2)
    assert standard_error([1.0]) == 0.0


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
