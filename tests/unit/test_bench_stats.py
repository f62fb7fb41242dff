from __future__ import annotations

import math

import pytest

from bench.harness import comparison, median_interval


def _coverage(n: int, k: int) -> float:
    return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n


def test_nine_runs_give_the_second_to_the_eighth() -> None:
    ci = median_interval([9, 1, 8, 2, 7, 3, 6, 4, 5])
    assert (ci["low"], ci["high"]) == (2, 8)
    assert ci["coverage"] == pytest.approx(_coverage(9, 2)) == pytest.approx(0.9609, abs=1e-4)


@pytest.mark.parametrize(("n", "k"), [(7, 1), (9, 2), (20, 6), (50, 18)])
def test_the_narrowest_interval_that_still_covers_95_percent(n: int, k: int) -> None:
    ci = median_interval(list(range(n)))
    assert (ci["low"], ci["high"]) == (k - 1, n - k)
    assert _coverage(n, k) >= 0.95 > _coverage(n, k + 1)


def test_too_few_runs_give_min_to_max_with_their_real_coverage() -> None:
    assert median_interval([3.0, 1.0]) == {"low": 1.0, "high": 3.0, "coverage": 0.5}


def test_a_goal_inside_the_interval_is_not_a_clear_verdict() -> None:
    b = [1.0] * 9
    at_the_line = comparison(
        "x", "a", [1.0, 1.05, 1.08, 1.09, 1.1, 1.11, 1.12, 1.15, 1.2], "b", b, 1.1
    )
    assert at_the_line["met"] is True and at_the_line["clear"] is False
    far = comparison("x", "a", [1.3, 1.31, 1.32, 1.33, 1.34, 1.35, 1.36, 1.37, 1.38], "b", b, 1.1)
    assert far["met"] is False and far["clear"] is True
