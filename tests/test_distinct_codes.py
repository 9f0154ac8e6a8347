"""Issue 21: the distinct strata, classes and groups of the statistics come from a count
where the codes are small and non-negative; they are np.unique's answer in every case."""

from __future__ import annotations

import numpy as np
import pytest

from ckptaudit.metrics.ranks import positives
from ckptaudit.stats.rows import distinct_codes


@pytest.mark.parametrize(
    "codes",
    [
        np.zeros(0, dtype=np.int64),
        np.zeros(5, dtype=np.int64),
        np.array([3, 1, 3, 7, 1], dtype=np.int64),
        np.array([3, 1, 3, 7, 1], dtype=np.int8),
        np.array([3, 1, 3, 7, 1], dtype=np.uint16),
        np.array([-2, 5, -2, 0]),  # negative: np.unique itself
        np.array([0, 10**12, 5]),  # far apart: np.unique itself, no huge count
        np.random.default_rng(0).integers(0, 1000, 100_000),
        np.array([[2, 0], [2, 9]]),
    ],
)
def test_distinct_codes_are_numpys_unique(codes):
    got = distinct_codes(codes)
    want = np.unique(codes)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, bool, np.int64, np.float64])
def test_positives_are_the_rows_of_the_ones(dtype):
    y = (np.random.default_rng(1).random(10_001) < 0.1).astype(dtype)
    np.testing.assert_array_equal(positives(y), np.flatnonzero(y))
