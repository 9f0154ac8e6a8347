"""Reading files that anyone could have written, without hanging, crashing or inflating.

Every file ckptaudit reads from a run (run.json, meta.json, val.npz, train.npz) and every
policy file goes through here, so that hostile or broken input becomes one clear error
naming the file. This module is the front door; it owns no code of its own and re-exports
:mod:`~ckptaudit.store.regularfiles` (only regular files are opened, small files and JSON
read bounded), :mod:`~ckptaudit.store.npzread` (a prediction archive's arrays measured
before anything is inflated; limit ``CKPTAUDIT_MAX_NPZ_BYTES``, default 2 GiB),
:mod:`~ckptaudit.store.zipstamp` (an archive's fingerprint) and
:mod:`~ckptaudit.store.atomicwrite` (atomic writes and link-free copies).
"""

from __future__ import annotations

from .atomicwrite import (
    copy_regular_tree as copy_regular_tree,
)
from .atomicwrite import (
    write_atomic as write_atomic,
)
from .npzread import (
    DEFAULT_MAX_NPZ_BYTES as DEFAULT_MAX_NPZ_BYTES,
)
from .npzread import (
    MAX_NPZ_ENV as MAX_NPZ_ENV,
)
from .npzread import (
    ReadBuffers as ReadBuffers,
)
from .npzread import (
    max_npz_bytes as max_npz_bytes,
)
from .npzread import (
    npy_layout as npy_layout,
)
from .npzread import (
    read_npy as read_npy,
)
from .npzread import (
    read_npz as read_npz,
)
from .regularfiles import (
    MAX_JSON_INT_DIGITS as MAX_JSON_INT_DIGITS,
)
from .regularfiles import (
    describe_mode as describe_mode,
)
from .regularfiles import (
    open_regular as open_regular,
)
from .regularfiles import (
    parse_json_text as parse_json_text,
)
from .regularfiles import (
    read_json as read_json,
)
from .regularfiles import (
    read_small as read_small,
)
from .regularfiles import (
    read_text as read_text,
)
from .zipstamp import (
    _quick_fingerprint as _quick_fingerprint,
)
from .zipstamp import (
    zip_fingerprint as zip_fingerprint,
)
