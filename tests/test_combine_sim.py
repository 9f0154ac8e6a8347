"""combine's honesty by simulation: 50 checkpoints of equal truth (n = 1,000), where any
combination's true gain over the best single checkpoint is exactly zero."""

from __future__ import annotations

import pytest

from ckptaudit.combining.simulation import simulate

pytestmark = pytest.mark.slow


def test_greedy_naive_gain_is_optimistic_corrected_is_near_truth_and_false_adoption_is_rare(tmp_path):
    f = simulate(tmp_path, runs=60, resamples=100, seed=1000)
    # the search's gain on the rows it chose on is optimism: the truth is 0
    assert f.naive_gain > 0.005
    # the selection-corrected gain is within 1 point of the truth on average
    assert abs(f.corrected_gain) < 0.01
    assert f.mean_abs_error < 0.01
    # a combination is adopted in at most 5% of runs where none truly helps
    assert f.false_adoption <= 0.05
