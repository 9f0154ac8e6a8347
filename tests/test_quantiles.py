"""Issue 21: the statistics' percentiles are numpy's, bit for bit, without numpy's overhead."""

from __future__ import annotations

import numpy as np
import pytest

from ckptaudit.stats.quantiles import percentiles

QS = ([2.5, 97.5], [5.0, 95.0], [0.0, 100.0], [50.0], [0.0, 2.5, 33.3, 50.0, 99.9, 100.0])


def _cases():
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 4, 7, 40, 41, 1000, 1001, 3001):
        yield rng.normal(size=n)
        yield np.round(rng.normal(size=n), 1)  # ties
        yield rng.normal(size=(n, 3))
        zeros = np.round(rng.normal(size=(n, 2)), 0) * 0.0  # signed zeros: -0.0 and 0.0
        yield zeros
        yield np.full(n, 0.25)


@pytest.mark.parametrize("q", QS)
def test_percentiles_are_numpys_bit_for_bit(q):
    for values in _cases():
        want = np.percentile(values, q, axis=0)
        got = percentiles(values, q)
        assert got.shape == want.shape and got.dtype == want.dtype
        assert got.tobytes() == want.tobytes(), (values.shape, q)


def test_other_dtypes_and_empty_arrays_are_numpys_own():
    ints = np.arange(11)
    np.testing.assert_array_equal(percentiles(ints, [5.0, 95.0]), np.percentile(ints, [5.0, 95.0], axis=0))
    f32 = np.linspace(0, 1, 9, dtype=np.float32)
    assert percentiles(f32, [10.0]).tobytes() == np.percentile(f32, [10.0], axis=0).tobytes()
    with pytest.raises(IndexError):  # numpy's own answer to no values, which is kept
        percentiles(np.zeros((0, 2)), [5.0])


def test_the_input_is_left_as_it_was():
    values = np.random.default_rng(1).normal(size=(101, 4))
    before = values.copy()
    percentiles(values, [2.5, 97.5])
    assert values.tobytes() == before.tobytes()
