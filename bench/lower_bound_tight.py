"""The tighter floor (issue 21): one ``preadv`` per file into a reused buffer, headers parsed by hand.

    python bench/lower_bound_tight.py ROOT [--metric recall] [--values-out FILE]

The same work per checkpoint as bench/lower_bound.py (runs found the same way, checkpoints
in epoch, step order, the validation-set check: every checkpoint's targets and ids equal
the first's, the same metrics and the same JSON), with less overhead around it:

- one ``os.preadv`` per val.npz (its size from one ``fstat``) into one buffer reused for
  every file (grown when a file is bigger): no ``zipfile`` objects, no seeks, no chunked
  reads, no fresh pages per checkpoint;
- the zip's end-of-central-directory record, its central directory (zip64 extras
  included: numpy writes them), the local headers and the ``.npy`` headers parsed by hand
  from that buffer, and the arrays taken as views of it (``np.frombuffer``, no copy);
- the validation-set check as a byte comparison of the target (and id) members with the
  first checkpoint's bytes; the metric on the views, checkpoint by checkpoint.

Like lower_bound.py it checks no CRC-32 and no finiteness (ckptaudit's rank does both):
what it measures is the cost of reading and scoring, which is what `rank` should be close
to. Compressed members are not supported (the bench writes stored members).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lower_bound import METRICS, checkpoints, find_runs, labels, vectorised_metric  # noqa: E402

_EOCD = b"PK\x05\x06"
_EOCD64_LOC = b"PK\x06\x07"
_CENTRAL = b"PK\x01\x02"


class Buffer:
    """One growing byte buffer that every file is read into."""

    def __init__(self) -> None:
        self.data = bytearray(1 << 20)

    def read(self, path: Path) -> memoryview:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size > len(self.data):
                self.data = bytearray(size)
            view = memoryview(self.data)[:size]
            if os.preadv(fd, [view], 0) != size:
                raise SystemExit(f"{path}: short read")
        finally:
            os.close(fd)
        return view


def _npy_header(buf: memoryview, start: int) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, data offset) of the .npy member starting at ``start``."""
    if bytes(buf[start : start + 6]) != b"\x93NUMPY":
        raise SystemExit("not a .npy member")
    major = buf[start + 6]
    if major == 1:
        hlen, hstart = struct.unpack_from("<H", buf, start + 8)[0], start + 10
    else:
        hlen, hstart = struct.unpack_from("<I", buf, start + 8)[0], start + 12
    header = ast.literal_eval(bytes(buf[hstart : hstart + hlen]).decode("latin1"))
    if header["fortran_order"]:
        raise SystemExit("Fortran-order member: not supported here")
    return np.dtype(header["descr"]), tuple(header["shape"]), hstart + hlen


def members(buf: memoryview) -> dict[str, np.ndarray]:
    """The stored .npy members of an npz held in ``buf``, as views of it, by array name."""
    size = len(buf)
    tail = bytes(buf[max(0, size - 65_557) :])
    at = tail.rfind(_EOCD)
    if at < 0:
        raise SystemExit("no end of central directory")
    eocd = size - len(tail) + at
    count, _, cd_offset = struct.unpack_from("<HII", buf, eocd + 10)
    if cd_offset == 0xFFFFFFFF or count == 0xFFFF:
        loc = eocd - 20
        if bytes(buf[loc : loc + 4]) != _EOCD64_LOC:
            raise SystemExit("zip64 locator missing")
        rec = struct.unpack_from("<Q", buf, loc + 8)[0]
        count, cd_offset = struct.unpack_from("<QQ", buf, rec + 32)[0], struct.unpack_from("<Q", buf, rec + 48)[0]
    out: dict[str, np.ndarray] = {}
    pos = cd_offset
    for _ in range(count):
        if bytes(buf[pos : pos + 4]) != _CENTRAL:
            raise SystemExit("bad central directory")
        method = struct.unpack_from("<H", buf, pos + 10)[0]
        csize, usize = struct.unpack_from("<II", buf, pos + 20)
        nlen, elen, clen = struct.unpack_from("<HHH", buf, pos + 28)
        offset = struct.unpack_from("<I", buf, pos + 42)[0]
        name = bytes(buf[pos + 46 : pos + 46 + nlen]).decode()
        if offset == 0xFFFFFFFF:
            # the zip64 extra holds, in order, the 64-bit fields whose 32-bit ones are 0xFFFFFFFF
            extra = pos + 46 + nlen
            end = extra + elen
            while extra + 4 <= end:
                tag, length = struct.unpack_from("<HH", buf, extra)
                if tag == 1:
                    fields = extra + 4
                    fields += 8 * (usize == 0xFFFFFFFF) + 8 * (csize == 0xFFFFFFFF)
                    offset = struct.unpack_from("<Q", buf, fields)[0]
                    break
                extra += 4 + length
        pos += 46 + nlen + elen + clen
        if method != 0 or not name.endswith(".npy"):
            raise SystemExit(f"{name}: compressed members are not supported here")
        lnlen, lelen = struct.unpack_from("<HH", buf, offset + 26)
        dtype, shape, data = _npy_header(buf, offset + 30 + lnlen + lelen)
        n = int(np.prod(shape, dtype=np.int64))
        out[name[:-4]] = np.frombuffer(buf, dtype, n, data).reshape(shape)
    return out


def score_run(run: Path, spec: dict, metric: str, buffer: Buffer) -> list[tuple[str, float]]:
    """All checkpoint values of one run, one read per file."""
    ckpts = checkpoints(run)
    if not ckpts:
        return []
    task, kind = spec["task"], spec["output"]
    target0 = ids0 = None
    values: list[float] = []
    for name, folder in ckpts:
        arrays = members(buffer.read(folder / "val.npz"))
        target, output, ids = arrays["target"], arrays["output"], arrays.get("id")
        if target0 is None:
            target0 = target.copy()  # the buffer is reused by the next file
            ids0 = None if ids is None else ids.copy()
        elif target.shape != target0.shape or target.tobytes() != target0.tobytes():
            raise SystemExit(f"{run}: the validation set changed at {name}")
        elif (ids is None) != (ids0 is None) or (ids is not None and ids.tobytes() != ids0.tobytes()):
            raise SystemExit(f"{run}: sample ids changed at {name}")
        wide = output.ndim > 1 and task != "regression"
        one = labels(task, kind, output)[None] if wide else output[None]
        values.extend(vectorised_metric(task, kind, metric, target0, one))
    return list(zip([n for n, _ in ckpts], values, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--metric", default="recall", choices=METRICS)
    parser.add_argument("--values-out", type=Path, default=None, help="write every [run, checkpoint, value] as JSON")
    args = parser.parse_args(argv)
    buffer = Buffer()
    rows: list[tuple[str, str, float]] = []
    for run in find_runs(args.root):
        spec = json.loads((run / "run.json").read_text())
        rows.extend((str(run), name, value) for name, value in score_run(run, spec, args.metric, buffer))
    if not rows:
        print(json.dumps({"checkpoints": 0}))
        return 2
    best = max(rows, key=lambda r: r[2]) if args.metric != "mse" else min(rows, key=lambda r: r[2])
    print(json.dumps({"checkpoints": len(rows), "metric": args.metric, "best": list(best)}))
    if args.values_out is not None:
        args.values_out.write_text(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
