"""Issue 10's targets, measured in one run: every verb at every size, against plain `rank`,
against the lower-bound script, and against one checkpoint's memory.

    python bench/bench_scale.py [--shapes binary,multiclass,...] [--repeat N] [--timeout 300]
                                [--quick] [--mem-limit GIB] [--out bench/out]

Shapes (the issue's table; written once in the docs/format.md run format into
OUT/scale-cache/, reused when present):

  binary      200 checkpoints x 100,000 rows, 4 runs, probabilities (bench_rank.py's sweep)
  multiclass  5 x 50,000 rows x 1,000 classes, float32 logits, 1 run
  multilabel  10 x 50,000 rows x 100 labels, float32 logits, 1 run
  regression  10 x 100,000 rows, 1 run
  hpo         5,000 checkpoints in 1,000 runs x 1,000 rows, binary probabilities

For each shape and metric (a label metric, roc_auc where it applies, and average_precision on
binary), each command runs
as a fresh process (best wall time of N; N = --repeat, else 3 for the small shapes and 1 for
binary and multiclass; an attempt slower than --slow seconds is not repeated): `rank`,
`rank --ci`, `audit`, `pick`, `check` (the run of rank's winner, --chosen the winner), and
for the label metric `rank --cache` (build, then warm), the lower-bound script
(bench/lower_bound.py: direct zip reads into one matrix), the tight lower bound
(bench/lower_bound_tight.py: one preadv per file into a reused buffer, headers parsed by
hand) and the hand-written numpy script
(np.load + np.stack); the binary shapes add the np.load floor and the scikit-learn loop of
bench_rank.py; `report` (the HTML page) is timed beside the other verbs. The lower bounds'
values are compared with rank's JSON.

Hygiene (issue 21): ckptaudit and the bench are compiled to bytecode first and the children
run without PYTHONDONTWRITEBYTECODE; every ckptaudit command runs with CKPTAUDIT_JOBS=--jobs
(default 1, the lower bounds' process count; the automatic choice follows the load average,
so an idle moment would compare a 2-process rank with 1-process verbs) and reports the
workers it started (CKPTAUDIT_REPORT_JOBS), shown as "procs"; every row shows CPU seconds
(user + system, workers included) and the load average at its start beside the wall time.

Every child's peak RSS comes from os.wait4. A child that runs past --timeout is killed and
reported as "timeout"; one whose stderr shows a MemoryError (numpy's "Unable to allocate")
as "MemoryError"; any other exit code outside 0/1 as "exit N". --mem-limit caps each
child's address space (default 16 GiB; 0 for none) so that a runaway allocation fails
as a MemoryError instead of taking the machine's memory from its other users.

Memory flat in checkpoints: one run of 1,000 and of 20,000 checkpoints x 1,000 rows
(--memory-checkpoints; bench_memory.py's cases), `rank --ci`, `pick` and `audit` under recall
and roc_auc, each peak against its allowance, and the growth of the peak from the fewest to
the most checkpoints against the growth of the per-row data.

Prints one table per shape with the ratios the issue names, a summary against the targets,
and writes everything to OUT/bench_scale-<time>.json (and OUT/bench_scale-latest.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from bench_rank import LOAD_ONLY_SCRIPT, SKLEARN_SCRIPT, build_sweep  # noqa: E402


@dataclass(frozen=True)
class Shape:
    """One size of the issue's table."""

    name: str
    task: str
    output: str
    runs: int
    checkpoints: int
    rows: int
    width: int  # classes (multiclass logits) or labels; 0 for (N,) outputs
    label_metric: str  # the metric the lower bound computes
    metrics: tuple[str, ...]
    repeat: int  # default best-of count

    def describe(self) -> str:
        width = f" x {self.width} {'classes' if self.task == 'multiclass' else 'labels'}" if self.width else ""
        return f"{self.checkpoints} checkpoints in {self.runs} run(s) x {self.rows:,} rows{width}, {self.task} {self.output}"


SHAPES = {
    "binary": Shape(
        "binary", "binary", "probability", 4, 200, 100_000, 0, "recall", ("recall", "roc_auc", "average_precision"), 3
    ),
    "multiclass": Shape("multiclass", "multiclass", "logit", 1, 5, 50_000, 1000, "accuracy", ("accuracy", "roc_auc"), 1),
    "multilabel": Shape("multilabel", "multilabel", "logit", 1, 10, 50_000, 100, "accuracy", ("accuracy", "roc_auc"), 1),
    "regression": Shape("regression", "regression", "value", 1, 10, 100_000, 0, "mse", ("mse",), 3),
    "hpo": Shape("hpo", "binary", "probability", 1000, 5000, 1000, 0, "recall", ("recall", "roc_auc"), 3),
}
QUICK = {
    "binary": Shape("binary", "binary", "probability", 2, 6, 2000, 0, "recall", ("recall", "roc_auc", "average_precision"), 1),
    "multiclass": Shape("multiclass", "multiclass", "logit", 1, 3, 600, 20, "accuracy", ("accuracy", "roc_auc"), 1),
    "multilabel": Shape("multilabel", "multilabel", "logit", 1, 3, 600, 5, "accuracy", ("accuracy", "roc_auc"), 1),
    "regression": Shape("regression", "regression", "value", 1, 3, 1000, 0, "mse", ("mse",), 1),
    "hpo": Shape("hpo", "binary", "probability", 10, 20, 300, 0, "recall", ("recall", "roc_auc"), 1),
}

VERBS = ("rank", "rank --ci", "audit", "pick", "check", "report")

# The interpreter with numpy and the verbs' modules imported, nothing read: the memory a
# verb cannot avoid, subtracted before comparing its peak with one checkpoint's arrays.
IDLE_SCRIPT = """
import importlib, numpy
for name in ("ckptaudit.cli", "ckptaudit.ranking", "ckptaudit.auditing", "ckptaudit.picking", "ckptaudit.gate",
             "ckptaudit.metrics.evaluation", "ckptaudit.stats.bootstrap", "ckptaudit.render", "ckptaudit.views"):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
"""


# --------------------------------------------------------------------------- data


def write_run(run: Path, shape: Shape, rng: np.random.Generator) -> None:
    """One run of ``shape.checkpoints // shape.runs`` checkpoints whose quality grows by epoch."""
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    rows, width = shape.rows, shape.width
    if shape.task == "multiclass":
        target = rng.integers(0, width, rows, dtype=np.int64)
    elif shape.task == "multilabel":
        target = (rng.random((rows, width)) < 0.1).astype(np.int64)
    else:
        target = rng.standard_normal(rows, dtype=np.float32)
    spec = {"format": "ckptaudit/1", "task": shape.task, "output": shape.output}
    (run / "run.json").write_text(json.dumps(spec))
    ids = np.arange(rows, dtype=np.int64)
    for e in range(shape.checkpoints // shape.runs):
        if shape.task == "multiclass":
            output = rng.standard_normal((rows, width), dtype=np.float32)
            output[ids, target] += np.float32(2.0 + 0.2 * e)
        elif shape.task == "multilabel":
            output = rng.standard_normal((rows, width), dtype=np.float32)
            output += (2 * target - 1).astype(np.float32) * np.float32(0.5 + 0.1 * e)
        else:
            output = target + rng.standard_normal(rows, dtype=np.float32) / np.float32(1 + 0.1 * e)
        ckpt = run / "checkpoints" / f"epoch-{e:04d}"
        ckpt.mkdir(exist_ok=True)
        (ckpt / "meta.json").write_text(json.dumps({"epoch": e, "logged": {"val_loss": 1.0 / (1 + e)}}))
        np.savez(ckpt / "val.npz", target=target, output=output, id=ids)


def ensure_data(cache: Path, shape: Shape) -> Path:
    """The shape's folder under ``cache``, written unless a complete copy is there."""
    folder = cache / f"{shape.name}-{shape.runs}r-{shape.checkpoints}c-{shape.rows}n-{shape.width}w"
    done = folder / "complete.json"
    if done.is_file():
        return folder / "data"
    if folder.exists():
        shutil.rmtree(folder)
    start = time.perf_counter()
    data = folder / "data"
    if shape.task == "binary":
        build_sweep(data, shape.checkpoints, shape.rows, shape.runs)
    else:
        rng = np.random.default_rng(0)
        for r in range(shape.runs):
            write_run(data / f"run-{r:02d}", shape, rng)
    done.write_text(json.dumps({"shape": asdict(shape), "seconds": time.perf_counter() - start}))
    print(f"  wrote {shape.name} in {time.perf_counter() - start:.1f} s: {data}", flush=True)
    return data


def runs_of(data: Path) -> list[Path]:
    return sorted(p.parent for p in data.rglob("run.json"))


def compact_bytes(shape: Shape, metric: str) -> int:
    """The compact per-row data the issue allows the statistics verbs beyond two checkpoints'
    arrays: every checkpoint's rows in their smallest exact form: a predicted label (1 byte,
    2 above 255 classes; a multilabel row's labels as bits) or one float32 score or loss."""
    label = metric in ("accuracy", "recall", "precision", "f1", "balanced_accuracy", "mcc", "kappa")
    if not label:
        per_row = 4.0
    elif shape.task == "multilabel":
        per_row = max(shape.width, 1) / 8
    else:
        per_row = 1.0 if shape.width <= 255 else 2.0
    return int(shape.checkpoints * shape.rows * per_row)


def one_checkpoint_bytes(data: Path) -> int:
    """The bytes of one checkpoint's arrays (the members of its val.npz)."""
    first = next(iter(sorted((runs_of(data)[0] / "checkpoints").iterdir())))
    with zipfile.ZipFile(first / "val.npz") as zf:
        return sum(i.file_size for i in zf.infolist())


# --------------------------------------------------------------------------- timing


@dataclass
class Result:
    """One command's best time, peak memory and status."""

    shape: str
    metric: str
    case: str
    command: list[str]
    status: str = "ok"  # ok, timeout, MemoryError, exit N, killed (signal N), skipped
    seconds: float | None = None  # best wall time over the attempts that succeeded
    times: list[float] = field(default_factory=list)
    peak_mib: float | None = None  # largest peak RSS over the attempts
    cpu_seconds: float | None = None  # user + system CPU of the best attempt (its waited-for workers included)
    load: float | None = None  # the 1-minute load average when the best attempt started
    processes: int | None = None  # 1 + the workers of the largest pool it started (CKPTAUDIT_REPORT_JOBS)
    detail: str = ""  # the last line of stderr of a failure, or a value check
    vs_rank: float | None = None
    vs_lower_bound: float | None = None
    vs_tight_bound: float | None = None
    mem_ratio: float | None = None


def _limit_memory(limit_bytes: int):
    def apply() -> None:
        os.setsid()
        if limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


def child_env(jobs: str) -> dict[str, str]:
    """The children's environment: bytecode written and read (no PYTHONDONTWRITEBYTECODE:
    an editable install recompiles ckptaudit at every start without it, +0.1 s a command),
    every pool reporting its workers, and one process count for every command (``jobs``:
    CKPTAUDIT_JOBS; ``auto`` keeps the automatic choice, which follows the load average)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["CKPTAUDIT_REPORT_JOBS"] = "1"
    env.pop("CKPTAUDIT_JOBS", None)
    if jobs != "auto":
        env["CKPTAUDIT_JOBS"] = jobs
    return env


CHILD_ENV: dict[str, str] = child_env("1")


def precompile() -> None:
    """Bytecode for ckptaudit and the bench scripts, written before anything is timed."""
    import compileall

    for folder in (ROOT / "ckptaudit", BENCH):
        compileall.compile_dir(str(folder), quiet=1)


def _processes(stderr: str) -> int:
    """1 + the workers of the largest pool a command's stderr reports (none: 1 process)."""
    workers = [int(line.split()[1]) for line in stderr.splitlines() if line.startswith("ckptaudit-jobs: ")]
    return 1 + max(workers, default=0)


#: the CPU seconds, load average and process count of the latest :func:`run_once`
LAST: dict[str, float] = {}


def run_once(cmd: list[str], timeout: float, mem_limit: int, stdout_path: Path | None) -> tuple[str, float, float, str]:
    """(status, wall seconds, peak RSS MiB, last stderr line) of one fresh process; its CPU
    seconds, the load average at its start and its process count in :data:`LAST`."""
    with tempfile.TemporaryFile() as err, open(stdout_path, "wb") if stdout_path else open(os.devnull, "wb") as out:
        LAST["load"] = os.getloadavg()[0]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, preexec_fn=_limit_memory(mem_limit), cwd=ROOT, env=CHILD_ENV)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    LAST["cpu"] = usage.ru_utime + usage.ru_stime
    LAST["processes"] = _processes(text)
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("ckptaudit-jobs: ")]
    last = lines[-1][:300] if lines else ""
    peak = usage.ru_maxrss / 1024
    if timed_out.is_set():
        return "timeout", wall, peak, f"killed after {timeout:g} s"
    if "MemoryError" in text or "Unable to allocate" in text:
        return "MemoryError", wall, peak, last
    if proc.returncode < 0:
        return f"killed (signal {-proc.returncode})", wall, peak, last
    if proc.returncode not in (0, 1):
        return f"exit {proc.returncode}", wall, peak, last
    return "ok", wall, peak, ""


def measure(result: Result, repeat: int, args: argparse.Namespace, stdout_path: Path | None = None) -> Result:
    """Run ``result.command`` up to ``repeat`` times; stop at the first failure or slow attempt."""
    for i in range(repeat):
        status, wall, peak, detail = run_once(result.command, args.timeout, args.mem_limit_bytes, stdout_path if i == 0 else None)
        result.peak_mib = peak if result.peak_mib is None else max(result.peak_mib, peak)
        if status != "ok":
            result.status, result.detail = status, detail
            result.seconds = None
            result.times.append(round(wall, 4))
            break
        result.times.append(round(wall, 4))
        if result.seconds is None or wall < result.seconds:
            result.cpu_seconds, result.load = round(LAST["cpu"], 3), round(LAST["load"], 2)
        result.processes = max(result.processes or 0, int(LAST["processes"]))
        result.seconds = min(result.times)
        if wall > args.slow:
            break
    shown = f"{result.seconds:.3f} s" if result.seconds is not None else result.status
    print(
        f"  {result.shape:10} {result.metric:9} {result.case:22} {shown:>10}  cpu {result.cpu_seconds or 0:7.2f} s  "
        f"load {result.load or 0:4.1f}  procs {result.processes or '-'}  {result.peak_mib or 0:8.0f} MiB",
        flush=True,
    )
    return result


# --------------------------------------------------------------------------- one shape


def clear_caches(data: Path) -> None:
    for run in runs_of(data):
        shutil.rmtree(run / ".ckptaudit-cache", ignore_errors=True)
    (data / ".ckptaudit-sweep-cache.json").unlink(missing_ok=True)  # the sweep's book


def compare_values(rank_json: Path, values_json: Path) -> str:
    """How the lower bound's values agree with `rank --format json`'s, in words."""
    try:
        ranked = json.loads(rank_json.read_text())
        mine = json.loads(values_json.read_text())
    except (OSError, ValueError) as exc:
        return f"not compared ({exc.__class__.__name__})"
    metric = (
        next((k for k in ranked[0] if k not in {"rank", "run", "checkpoint", "epoch", "step", "flags", "notes"}), None)
        if ranked
        else None
    )
    if metric is None:
        return "not compared (empty ranking)"
    theirs = {(str(Path(r["run"]).resolve()), r["checkpoint"]): r[metric] for r in ranked}
    ours = {(str(Path(run).resolve()), name): v for run, name, v in mine}
    if theirs.keys() != ours.keys():
        return f"MISMATCH: {len(theirs)} checkpoints ranked, {len(ours)} in the lower bound"
    diff = max(abs((theirs[k] if theirs[k] is not None else float("nan")) - ours[k]) for k in ours)
    return f"values match rank (max |diff| {diff:.1e})" if diff <= 1e-12 else f"MISMATCH: max |diff| {diff:.3g}"


def winner(rank_json: Path, data: Path) -> tuple[Path, str]:
    """The run and checkpoint ranked first; the first run's first checkpoint when rank failed."""
    try:
        first = json.loads(rank_json.read_text())[0]
        return Path(first["run"]), first["checkpoint"]
    except (OSError, ValueError, IndexError, KeyError):
        run = runs_of(data)[0]
        return run, sorted(p.name for p in (run / "checkpoints").iterdir())[0]


def bench_shape(shape: Shape, data: Path, args: argparse.Namespace, work: Path, idle_mib: float) -> dict:
    """Every measurement of one shape."""
    exe = [sys.executable, "-m", "ckptaudit"]
    py = sys.executable
    repeat = args.repeat or shape.repeat
    ckpt_bytes = one_checkpoint_bytes(data)
    two_ckpts_mib = 2 * ckpt_bytes / 2**20
    results: list[Result] = []
    resamples = ["--resamples", str(args.resamples)]
    root = str(data)
    # warm the page cache: every case reads from memory, as a repeated run would
    run_once([py, "-c", LOAD_ONLY_SCRIPT, root], args.timeout, args.mem_limit_bytes, None)

    lm = shape.label_metric
    lb_values = work / f"{shape.name}-lower-bound.json"
    stack_values = work / f"{shape.name}-stack.json"
    lower = Result(
        shape.name, lm, "lower bound", [py, str(BENCH / "lower_bound.py"), root, "--metric", lm, "--values-out", str(lb_values)]
    )
    stack = Result(
        shape.name,
        lm,
        "numpy stack script",
        [py, str(BENCH / "lower_bound.py"), root, "--metric", lm, "--method", "stack", "--values-out", str(stack_values)],
    )
    tight_values = work / f"{shape.name}-tight-bound.json"
    tight = Result(
        shape.name,
        lm,
        "tight lower bound",
        [py, str(BENCH / "lower_bound_tight.py"), root, "--metric", lm, "--values-out", str(tight_values)],
    )
    with_label = args.metrics != "score"
    if with_label:
        results += [measure(lower, repeat, args), measure(tight, repeat, args), measure(stack, repeat, args)]
    if with_label and shape.task == "binary":
        results.append(measure(Result(shape.name, lm, "np.load floor", [py, "-c", LOAD_ONLY_SCRIPT, root]), repeat, args))
        if not args.no_sklearn:
            results.append(measure(Result(shape.name, lm, "sklearn loop", [py, "-c", SKLEARN_SCRIPT, root]), repeat, args))

    metrics = {"label": shape.metrics[:1], "score": shape.metrics[1:], "all": shape.metrics}[args.metrics]
    for metric in metrics:
        rank_json = work / f"{shape.name}-{metric}-rank.json"
        rank = measure(
            Result(shape.name, metric, "rank", exe + ["rank", root, "-m", metric, "-f", "json"]), repeat, args, rank_json
        )
        results.append(rank)
        if metric == lm and "jobs" not in args.skip and args.jobs != "1":
            # the same rank in one process: what the automatic process pool (both cores) saves
            one = exe + ["rank", root, "-m", metric, "-f", "json", "-j", "1"]
            results.append(measure(Result(shape.name, metric, "rank -j 1", one), repeat, args))
        if metric == lm:
            lower.detail = compare_values(rank_json, lb_values) if rank.status == "ok" and lower.status == "ok" else lower.detail
            tight.detail = (
                compare_values(rank_json, tight_values) if rank.status == "ok" and tight.status == "ok" else tight.detail
            )
            stack.detail = (
                compare_values(rank_json, stack_values) if rank.status == "ok" and stack.status == "ok" else stack.detail
            )
        win_run, win_ckpt = winner(rank_json, data)
        verbs = {
            "rank --ci": exe + ["rank", root, "-m", metric, "--ci", "-f", "json"] + resamples,
            "audit": exe + ["audit", root, "-m", metric, "-f", "json"] + resamples,
            "pick": exe + ["pick", root, "-m", metric, "-f", "json"] + resamples,
            "check": exe + ["check", str(win_run), "-m", metric, "--chosen", win_ckpt, "-f", "json"] + resamples,
            "report": exe + ["report", root, "-m", metric, "-o", str(work / f"{shape.name}-{metric}-report.html")] + resamples,
        }
        for case, cmd in verbs.items():
            if case.split()[0] in args.skip:
                continue
            results.append(measure(Result(shape.name, metric, case, cmd), repeat, args))
        if metric == lm and "cache" not in args.skip:
            clear_caches(data)
            cached = exe + ["rank", root, "-m", metric, "-f", "json", "--cache"]
            results.append(measure(Result(shape.name, metric, "rank --cache (build)", cached), 1, args))
            results.append(measure(Result(shape.name, metric, "rank --cache (warm)", cached), repeat, args))
            clear_caches(data)

    ranks = {r.metric: r for r in results if r.case == "rank"}
    for r in results:
        base = ranks.get(r.metric)
        if (
            r.seconds is not None
            and base is not None
            and base.seconds
            and (r.case in VERBS[1:] or r.case.startswith("rank --cache"))
        ):
            r.vs_rank = r.seconds / base.seconds
        if r.case == "rank" and r.metric == lm and r.seconds and lower.seconds:
            r.vs_lower_bound = r.seconds / lower.seconds
        if r.case == "rank" and r.metric == lm and r.seconds and tight.seconds:
            r.vs_tight_bound = r.seconds / tight.seconds
        if r.case in ("tight lower bound", "numpy stack script", "np.load floor", "sklearn loop") and r.seconds and lower.seconds:
            r.vs_lower_bound = r.seconds / lower.seconds
        if r.peak_mib is not None and r.case in VERBS + ("rank --cache (build)", "rank --cache (warm)"):
            # plain rank and the cache keep no per-row data: their allowance is two checkpoints
            compact = compact_bytes(shape, r.metric) if r.case in VERBS[1:] else 0
            r.mem_ratio = max(r.peak_mib - idle_mib, 0.0) / (two_ckpts_mib + compact / 2**20)
    return {
        "shape": asdict(shape),
        "description": shape.describe(),
        "data": root,
        "one_checkpoint_mib": ckpt_bytes / 2**20,
        "compact_mib": {m: compact_bytes(shape, m) / 2**20 for m in shape.metrics},
        "repeat": repeat,
        "results": [asdict(r) for r in results],
    }


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_table(report: dict) -> str:
    """The per-shape tables and the summary against the issue's targets, as text."""
    lines = [
        f"ckptaudit bench_scale  {report['time']}  host load {report['load']}  python {report['python']}",
        f"fresh processes, best of N wall seconds; peak = max RSS of the child; idle = peak of a process that imports numpy and the verbs' modules "
        f"{report['idle_mib']:.0f} MiB; mem x allow = (peak - idle) / allowance: "
        f"2 x one checkpoint's arrays, plus for ci/audit/pick/check the compact per-row data of every checkpoint "
        f"(1 B a label, 2 B above 255 classes, 1 bit a multilabel label, 4 B a score or loss)",
        f"per-command timeout {report['timeout']} s; bootstrap resamples {report['resamples']}; address-space cap {report['mem_limit_gib']} GiB; "
        f"CKPTAUDIT_JOBS={report.get('jobs', '-')}; bytecode precompiled (PYTHONDONTWRITEBYTECODE unset); "
        f"cpu s = user+system of the best attempt; load = 1-minute load average at its start; procs = 1 + pool workers",
        f"ckptaudit --help: {_fmt(report['help_seconds'], '.3f')} s (target < 0.1)",
    ]
    header = (
        f"{'case':22} {'metric':9} {'status':12} {'seconds':>9} {'cpu s':>8} {'load':>5} {'procs':>5} {'peak MiB':>9} "
        f"{'x rank':>7} {'x LB':>7} {'x tight':>7} {'mem xallow':>10}  detail"
    )
    for shape in report["shapes"]:
        lines += [
            "",
            f"== {shape['shape']['name']}: {shape['description']}; one checkpoint's arrays {shape['one_checkpoint_mib']:.2f} MiB; "
            f"compact data {', '.join(f'{m} {v:.1f} MiB' for m, v in shape.get('compact_mib', {}).items())}; best of {shape['repeat']}",
            header,
        ]
        for r in shape["results"]:
            lines.append(
                f"{r['case']:22} {r['metric']:9} {r['status']:12} {_fmt(r['seconds'], '9.3f'):>9} "
                f"{_fmt(r.get('cpu_seconds'), '8.2f'):>8} {_fmt(r.get('load'), '5.1f'):>5} {_fmt(r.get('processes'), 'd'):>5} "
                f"{_fmt(r['peak_mib'], '9.0f'):>9} {_fmt(r['vs_rank'], '7.2f'):>7} {_fmt(r['vs_lower_bound'], '7.2f'):>7} "
                f"{_fmt(r.get('vs_tight_bound'), '7.2f'):>7} {_fmt(r['mem_ratio'], '10.2f'):>10}  {r['detail']}"
            )
    if report.get("memory"):
        lines += [
            "",
            "== memory: one run x 1,000 rows; allowance = 2 x one checkpoint's arrays + every checkpoint's compact per-row data",
        ]
        lines.append(
            f"{'checkpoints':>11} {'verb':10} {'metric':9} {'peak MiB':>9} {'allow MiB':>10} {'xallow':>7} {'seconds':>8} {'cpu s':>7} {'load':>5}"
        )
        for c in report["memory"]:
            lines.append(
                f"{c['checkpoints']:>11} {c['verb']:10} {c['metric']:9} {c['peak_mib']:9.0f} {c['allowance_mib']:10.1f} "
                f"{c['ratio']:7.2f} {c['wall']:8.2f} {c['cpu']:7.2f} {c['load']:5.1f}"
            )
    lines += ["", "== targets (issue 21)", f"{'shape':11} {'target':44} {'measured':>10} {'limit':>7}  verdict"]
    for row in report["summary"]:
        lines.append(f"{row['shape']:11} {row['target']:44} {row['measured']:>10} {row['limit']:>7}  {row['verdict']}")
    return "\n".join(lines)


def summarise(shapes: list[dict]) -> list[dict]:
    """One row per target and shape: the worst measured ratio and whether it meets the limit."""
    rows = []

    def add(shape: str, target: str, value: float | None, limit: float, failed: list[str]) -> None:
        if failed:
            measured, verdict = "failed", "MISS: " + ", ".join(failed)
        elif value is None:
            measured, verdict = "-", "not measured"
        else:
            measured, verdict = f"{value:.2f}", "ok" if value <= limit else "MISS"
        rows.append({"shape": shape, "target": target, "measured": measured, "limit": f"{limit:g}", "verdict": verdict})

    for shape in shapes:
        name = shape["shape"]["name"]
        res = shape["results"]
        for r in res:
            if r["case"] == "rank" and r["metric"] == shape["shape"]["label_metric"]:
                add(
                    name,
                    f"rank -m {r['metric']} / lower bound",
                    r["vs_lower_bound"],
                    1.5,
                    [] if r["status"] == "ok" else [f"rank {r['status']}"],
                )
                add(
                    name,
                    f"rank -m {r['metric']} / tight lower bound",
                    r.get("vs_tight_bound"),
                    1.3,
                    [] if r["status"] == "ok" else [f"rank {r['status']}"],
                )
                by_case = {x["case"]: x for x in res if x["metric"] == r["metric"]}
                single = by_case.get("rank -j 1")
                if single and single["seconds"] and r["seconds"]:
                    rows.append(
                        {
                            "shape": name,
                            "target": "rank -j 1 / rank (automatic jobs)",
                            "measured": f"{single['seconds'] / r['seconds']:.2f}",
                            "limit": "-",
                            "verdict": "info",
                        }
                    )
                for case, label in (("numpy stack script", "rank / numpy stack script"), ("sklearn loop", "sklearn loop / rank")):
                    other = by_case.get(case)
                    if other and other["seconds"] and r["seconds"]:
                        ratio = r["seconds"] / other["seconds"] if case != "sklearn loop" else other["seconds"] / r["seconds"]
                        rows.append({"shape": name, "target": label, "measured": f"{ratio:.2f}", "limit": "-", "verdict": "info"})
        for metric in shape["shape"]["metrics"]:
            verbs = [r for r in res if r["metric"] == metric and r["case"] in VERBS[1:]]
            failed = [f"{r['case']} {r['status']}" for r in verbs if r["status"] != "ok"]
            worst = max((r["vs_rank"] for r in verbs if r["vs_rank"] is not None), default=None)
            add(name, f"worst of ci/audit/pick/check/report / rank ({metric})", worst, 2.0, failed)
            # the ratios compare like with like only at one process count
            procs = sorted(
                {r.get("processes") for r in res if r["metric"] == metric and r["case"] in VERBS and r.get("processes")}
            )
            if len(procs) > 1:
                rows.append(
                    {
                        "shape": name,
                        "target": f"process counts differ ({metric})",
                        "measured": "/".join(map(str, procs)),
                        "limit": "1",
                        "verdict": "MISS",
                    }
                )
            mems = [
                r["mem_ratio"] for r in res if r["metric"] == metric and r["case"] in VERBS[1:] and r["mem_ratio"] is not None
            ]
            add(name, f"worst (peak - idle) / allowance ({metric})", max(mems, default=None), 1.0, [])
        build = next((r for r in res if r["case"] == "rank --cache (build)"), None)
        warm = next((r for r in res if r["case"] == "rank --cache (warm)"), None)
        if warm is not None:
            add(
                name,
                "rank --cache warm / rank",
                warm["vs_rank"],
                0.4,
                [] if warm["status"] == "ok" else [f"warm {warm['status']}"],
            )
        if build is not None:
            add(
                name,
                "rank --cache build (peak - idle) / 2 ckpts",
                build["mem_ratio"],
                1.0,
                [] if build["status"] == "ok" else [f"build {build['status']}"],
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, from {', '.join(SHAPES)}")
    parser.add_argument("--repeat", type=int, default=0, help="best of N for every command (default: 3 small shapes, 1 big)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per command before it is killed (default 300)")
    parser.add_argument("--slow", type=float, default=20.0, help="an attempt slower than this is not repeated (default 20 s)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the statistics verbs (default 1000)")
    parser.add_argument("--mem-limit", type=float, default=16.0, help="address-space cap per child in GiB (default 16; 0 = none)")
    parser.add_argument(
        "--skip", default="", help="comma-separated cases to leave out: rank (--ci), audit, pick, check, cache, jobs (rank -j 1)"
    )
    parser.add_argument(
        "--metrics",
        choices=("all", "label", "score"),
        default="all",
        help="label: each shape's label metric with the lower bound and cache cases; score: roc_auc only; all (default)",
    )
    parser.add_argument("--tag", default="", help="name part of the output files (bench_scale-TAG-latest.json)")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="print one table from these result files (of runs with --metrics label / score) and exit",
    )
    parser.add_argument(
        "--jobs",
        default="1",
        help="CKPTAUDIT_JOBS of every ckptaudit command (default 1, the lower bounds' count; 'auto': the load decides)",
    )
    parser.add_argument(
        "--memory-checkpoints",
        default="1000,20000",
        help="checkpoint counts of the memory-flatness cases (one run x 1,000 rows; '' to leave them out; quick: 10,200)",
    )
    parser.add_argument("--no-sklearn", action="store_true", help="leave out the scikit-learn loop")
    parser.add_argument("--quick", action="store_true", help="scaled-down shapes, for a smoke run")
    parser.add_argument("--out", type=Path, default=BENCH / "out", help="results and the data cache (default bench/out)")
    args = parser.parse_args(argv)
    if args.merge:
        merged = merge(args.merge)
        text = render_table(merged)
        print(text)
        suffix = f"-{args.tag}" if args.tag else "-merged"
        (args.out / f"bench_scale{suffix}-latest.json").write_text(json.dumps(merged, indent=1))
        (args.out / f"bench_scale{suffix}-latest.txt").write_text(text + "\n")
        return 0
    args.mem_limit_bytes = int(args.mem_limit * 2**30)
    global CHILD_ENV
    CHILD_ENV = child_env(args.jobs)
    precompile()
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    table = QUICK if args.quick else SHAPES
    names = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [n for n in names if n not in table]
    if unknown:
        parser.error(f"unknown shape(s) {', '.join(unknown)}; choose from {', '.join(table)}")
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / ("scale-cache-quick" if args.quick else "scale-cache")
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))

    helped = measure(Result("-", "-", "ckptaudit --help", [sys.executable, "-m", "ckptaudit", "--help"]), args.repeat or 3, args)
    idle = measure(Result("-", "-", "idle (imports only)", [sys.executable, "-c", IDLE_SCRIPT]), 1, args)
    report = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "jobs": args.jobs,
        "quick": args.quick,
        "timeout": args.timeout,
        "resamples": args.resamples,
        "mem_limit_gib": args.mem_limit,
        "idle_mib": idle.peak_mib or 0.0,
        "help_seconds": helped.seconds,
        "shapes": [],
    }
    suffix = "".join(f"-{part}" for part in ("quick" if args.quick else "", args.tag) if part)
    try:
        for name in names:
            shape = table[name]
            print(f"{name}: {shape.describe()}", flush=True)
            data = ensure_data(cache, shape)
            report["shapes"].append(bench_shape(shape, data, args, work, report["idle_mib"]))
            write_report(report, args.out, suffix, final=False)  # a crash or a kill keeps what was measured
        counts = "10,200" if args.quick and args.memory_checkpoints == "1000,20000" else args.memory_checkpoints
        if counts.strip():
            report["memory"] = memory_flat([int(c) for c in counts.split(",")], args, report["idle_mib"])
            write_report(report, args.out, suffix, final=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_report(report, args.out, suffix, final=True)
    return 0


MEMORY_VERBS = ("rank --ci", "pick", "audit")
MEMORY_METRICS = ("recall", "roc_auc")


def memory_flat(counts: list[int], args: argparse.Namespace, idle_mib: float) -> list[dict]:
    """bench_memory.py's cases: every statistics verb's peak on one run of each count."""
    from bench_memory import measure_memory

    print(f"memory: one run of {', '.join(map(str, counts))} checkpoints x 1,000 rows", flush=True)
    cache = args.out / ("mem-cache-quick" if args.quick else "mem-cache")
    results = []
    for metric in MEMORY_METRICS:
        results += measure_memory(counts, 1000, list(MEMORY_VERBS), metric, args.resamples, cache, CHILD_ENV, idle_mib)
    return results


def summarise_memory(cases: list[dict]) -> list[dict]:
    """Per metric: the worst (peak - idle) / allowance at the most checkpoints, and the worst
    growth of the peak from the fewest to the most against the growth of the per-row data."""
    rows = []
    for metric in sorted({c["metric"] for c in cases}):
        mine = [c for c in cases if c["metric"] == metric]
        low, high = min(c["checkpoints"] for c in mine), max(c["checkpoints"] for c in mine)
        failed = [f"{c['verb']} exit {c['exit']}" for c in mine if c["exit"] not in (0, 1)]
        at_high = {c["verb"]: c for c in mine if c["checkpoints"] == high}
        at_low = {c["verb"]: c for c in mine if c["checkpoints"] == low}
        worst = max(c["ratio"] for c in at_high.values())
        growth = max(
            (at_high[v]["peak_mib"] - at_low[v]["peak_mib"]) / (at_high[v]["allowance_mib"] - at_low[v]["allowance_mib"])
            for v in at_high
            if v in at_low and at_high[v]["allowance_mib"] > at_low[v]["allowance_mib"]
        )
        for target, value in (
            (f"{high} ckpts (peak - idle) / allowance ({metric})", worst),
            (f"peak growth {low}->{high} / per-row data ({metric})", growth),
        ):
            rows.append(
                {
                    "shape": "memory",
                    "target": target,
                    "measured": "failed" if failed else f"{value:.2f}",
                    "limit": "1",
                    "verdict": ("MISS: " + ", ".join(failed)) if failed else ("ok" if value <= 1.0 else "MISS"),
                }
            )
    return rows


def write_report(report: dict, out: Path, suffix: str, *, final: bool) -> None:
    """Summarise, and write the JSON (stamped and -latest) and the text table; print it when final."""
    report["summary"] = summarise(report["shapes"]) + summarise_memory(report.get("memory", []))
    report["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    report["complete"] = final
    text = render_table(report)
    stamp = report["time"].replace(":", "")
    for path in (out / f"bench_scale{suffix}-{stamp}.json", out / f"bench_scale{suffix}-latest.json"):
        path.write_text(json.dumps(report, indent=1))
    (out / f"bench_scale{suffix}-latest.txt").write_text(text + "\n")
    if final:
        print()
        print(text)
        print(f"\nwrote {out / f'bench_scale{suffix}-latest.json'}")


def merge(paths: list[Path]) -> dict:
    """One report from several (each shape's results concatenated in file order)."""
    reports = [json.loads(p.read_text()) for p in paths]
    merged = dict(reports[0])
    merged["time"] = " + ".join(r["time"] for r in reports)
    merged["load"] = " / ".join(r["load"] for r in reports)
    merged["timeout"] = " / ".join(str(r["timeout"]) for r in reports)
    shapes: dict[str, dict] = {}
    for r in reports:
        for shape in r["shapes"]:
            name = shape["shape"]["name"]
            if name in shapes:
                shapes[name] = dict(shapes[name], results=shapes[name]["results"] + shape["results"])
            else:
                shapes[name] = shape
    merged["shapes"] = list(shapes.values())
    merged["summary"] = summarise(merged["shapes"])
    return merged


if __name__ == "__main__":
    sys.exit(main())
