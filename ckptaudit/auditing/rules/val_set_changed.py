"""The ``val-set-changed`` finding."""

from __future__ import annotations

from ..common import Rule
from ..finding import CodeInfo

INFO = CodeInfo(
    "val-set-changed",
    "error",
    "Validation targets or ids differ between checkpoints of one run.",
    "A later checkpoint's val.npz holds other targets, other ids or another number of rows than the first.",
    "Scores on different validation sets cannot be compared: the ranking is meaningless.",
    "None for a single run; split runs that really used different validation sets into separate runs.",
    "Fix the data loader (shuffling or augmentation on the validation set) and re-evaluate the checkpoints.",
)


# NOTE: no detector here: the engine raises val-set-changed while it reads each checkpoint
# once (ValSetGuard in `_collect`), since comparing the sets needs every file of the run.
RULE = Rule(INFO, None, order=30)
