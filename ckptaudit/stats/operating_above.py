"""The rows above every threshold a column keeps, summed for every checkpoint at once (issue 20).

On the large-sample path a checkpoint's column keeps a window of thresholds; the rows that
every kept threshold flags count as one sum per resample and class (``Column.above``). Near a
high recall bound that is most of the weighted rows (``specificity@recall>=0.95`` on the
bench's 200 x 100,000: 36,000 of 95,000 per checkpoint), and gathering them checkpoint by
checkpoint was the largest part of the bootstrap. Summed as one product per class instead,
an indicator (a row per checkpoint, a column per row above for some checkpoint) times those
rows' weights, BLAS does the same additions about 20 times faster per cell, though the
product adds every such row for every checkpoint (measured on one batch of that shape: 0.71 s
of gathers and sums against 0.19 s for one product over every weighted row and both classes,
half the cells of which are the other class's zeros).

Whole counts: the weights are small integers and every partial sum stays below 2^24, so the
float32 product is exact whatever order BLAS adds in, and the sums equal the gathered ones
(tests/test_operating_point_stats.py).
"""

from __future__ import annotations

import numpy as np

from .operating_curves import Above, Column, accumulator

#: the product pays where the columns' above rows are at least this share of the indicators'
#: cells (checkpoints x the rows above for some checkpoint): measured 0.58 ns per gathered and
#: summed cell, 0.03 ns per cell of the product (one BLAS thread), so about 0.05; 0.1 keeps a margin
PRODUCT_SHARE = 0.1
#: weighted rows converted to float32 at a time (the product's copy stays a few MB)
ROW_BLOCK = 8192


class AboveProduct:
    """Per class, the rows above some column's thresholds and the indicator of each column's
    (columns, those rows), made once per bootstrap; :meth:`sums` gives every column's above
    sums under a batch of weights."""

    def __init__(self, cols: list[Column], rows: int) -> None:
        self.columns = len(cols)
        self.rows: list[np.ndarray] = []  #: per class, the weighted rows above for some column, ascending
        self.indicators: list[np.ndarray] = []
        for h in (0, 1):
            some = np.zeros(rows, bool)
            for col in cols:
                some[col.above[h]] = True
            at = np.cumsum(some) - 1  # a row's column in the indicator
            indicator = np.zeros((len(cols), int(some.sum())), np.uint8)
            for k, col in enumerate(cols):
                indicator[k, at[col.above[h]]] = 1
            self.rows.append(np.flatnonzero(some))
            self.indicators.append(indicator)

    @classmethod
    def where_it_pays(cls, cols: list[Column], rows: int) -> AboveProduct | None:
        """The product for ``cols`` over ``rows`` weighted rows, or None where gathering the
        above rows column by column costs less (:data:`PRODUCT_SHARE`)."""
        if not cols or rows == 0:
            return None
        cells = sum(col.above[0].shape[0] + col.above[1].shape[0] for col in cols)
        if cells < PRODUCT_SHARE * len(cols) * rows:  # (at most: the rows above some column)
            return None
        product = cls(cols, rows)
        return product if cells >= PRODUCT_SHARE * sum(m.size for m in product.indicators) else None

    def sums(self, wt: np.ndarray, top: int) -> list[Above] | None:
        """Per column, its above rows' sums under the weights ``wt`` (rows, resamples; one
        byte each), in :func:`~ckptaudit.stats.operating_curves.accumulator`'s type for
        ``top`` (the largest column sum of ``wt``); None where the weights are not one byte
        each or a sum could reach 2^24 (not exact in float32)."""
        if wt.dtype != np.uint8 or top >= 2**24:
            return None
        from .selection import _one_blas_thread

        acc = accumulator(wt, top)
        sums = []
        # NOTE: one BLAS thread, as the selection statistics: the process pool is the parallelism
        with _one_blas_thread():
            for rows, indicator in zip(self.rows, self.indicators, strict=True):
                out = np.zeros((self.columns, wt.shape[1]), np.float32)
                for a in range(0, rows.shape[0], ROW_BLOCK):
                    b = a + ROW_BLOCK
                    out += indicator[:, a:b].astype(np.float32) @ wt[rows[a:b]].astype(np.float32)
                sums.append(out.astype(acc))
        return [(sums[0][k], sums[1][k]) for k in range(self.columns)]
