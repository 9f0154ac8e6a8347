"""Benchmark: `rank --engine ray` against the local engine at 2 CPUs, and a modelled 10 nodes.

Builds bench_rank.py's synthetic binary sweep (default 1,000 checkpoints x 5,000 rows in
10 runs), starts a Ray head of 2 CPUs (`ray start --head --num-cpus 2`) and times, each as a
fresh process (best wall time of --repeat; stdout compared byte for byte with the first):

  local -j1      ckptaudit rank SWEEP -m roc_auc --jobs 1
  local -j2      ckptaudit rank SWEEP -m roc_auc --jobs 2
  ray @head      ckptaudit rank SWEEP -m roc_auc --engine ray --address HEAD (cluster running)
  ray (start)    ckptaudit rank SWEEP -m roc_auc --engine ray (a local Ray started and
                 stopped by the command: what a one-off command pays)

CPU seconds: the command's own (os.wait4: the process and the pool workers it started), and
for Ray also the cluster's processes (the head's raylet, GCS and workers, from psutil, sampled
every 0.1 s over the command); the load average is shown at each row's start.

The model (measured here, on this machine, then extrapolated):

  t_c  one checkpoint read + scored (parallel.run_block over every block, one process; wall)
  o    one Ray task's cost beyond its work: scheduling, arguments, the result's transfer
       (no-op tasks on the 2-CPU head: wall x CPUs / tasks)
  D0   the driver's fixed part: start-up, imports (wall of `rank -j1` on one checkpoint)
  d    the driver's part per checkpoint: discovery (listing, meta.json), putting outcomes
       back in order, the reduce and rendering (rank in this process with the outcomes
       computed beforehand, untimed: on the sweep less on one checkpoint, / (N - 1))
  C    reaching a running cluster (ray.init(address) in a fresh process), the first
       tasks' start (Ray starts each job's worker processes; they import ckptaudit) and
       leaving the cluster (ray.shutdown)

  local -j1:             T = D0 + N (d + t_c)
  Ray, n nodes x c CPUs: T = C + D0 + N d + (N t_c + B o) / (n c),   B = 8 n c blocks

which assumes every node reads its blocks at this machine's speed (the runs on a shared or
object store that serves each node as fast as this disk serves one), the driver's part stays
on the driver (Amdahl: speed-up <= (d + t_c) / d), and no straggler. Prints the table, the
model's terms, its check against the measured 2-CPU head, and T at 10 nodes of 2 and of 16
CPUs for this sweep and extrapolated to 100,000 checkpoints of the same size.

Usage: python bench/bench_ray_engine.py [--checkpoints 1000] [--rows 5000] [--runs 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from bench_rank import build_sweep  # noqa: E402


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _ray_cpu(head: subprocess.Popen | None) -> dict[int, float]:
    """CPU seconds (user + system) of each live process of the Ray head this bench started
    (the `ray start --block` process's descendants: GCS, raylet, workers), by pid."""
    if head is None:
        return {}
    import psutil

    seen: dict[int, float] = {}
    try:
        procs = psutil.Process(head.pid).children(recursive=True)
    except psutil.Error:
        return seen
    for p in procs:
        try:
            t = p.cpu_times()
            seen[p.pid] = t.user + t.system
        except psutil.Error:
            continue
    return seen


class _ClusterClock:
    """The Ray head's CPU seconds over a command: its processes sampled every 0.1 s, each
    counted at its last sample (the raylet reaps its workers without the kernel adding their
    time to its own, so a worker that exits with the command is known only by sampling)."""

    def __init__(self, head: subprocess.Popen | None) -> None:
        import threading

        self.head = head
        self.before = _ray_cpu(head)
        self.last = dict(self.before)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            self.last.update(_ray_cpu(self.head))

    def seconds(self) -> float:
        self.stop.set()
        self.thread.join()
        self.last.update(_ray_cpu(self.head))
        return sum(v - self.before.get(pid, 0.0) for pid, v in self.last.items())


def timed_rusage(cmd: list[str], head: subprocess.Popen | None) -> tuple[float, float, float, str, str]:
    """(wall, CPU seconds of the process and its children from wait4, CPU seconds of the Ray
    head's processes over the command, stdout, load average at the start) of one fresh process."""
    load = _load()
    clock = _ClusterClock(head)
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out_file:
        proc = subprocess.Popen(cmd, stdout=out_file, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read() if proc.stderr else ""
        out_file.seek(0)
        out = out_file.read()
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({code}): {err[-2000:]}")
    if head is not None:
        time.sleep(1)  # the command's workers finish after it
    return wall, usage.ru_utime + usage.ru_stime, clock.seconds(), out, load


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def per_checkpoint_seconds(sweep: Path, metric: str, repeat: int) -> tuple[float, int, int]:
    """t_c: every block read and scored in this process (the Ray tasks' work), per checkpoint:
    wall time (best of ``repeat``), as the commands' times are, so that the load inflates both alike."""
    from ckptaudit.metrics.evaluation import parse_metrics
    from ckptaudit.parallel import blocks, run_block
    from ckptaudit.store.reader import discover_sweep

    runs, _ = discover_sweep([sweep])
    specs = parse_metrics([metric], runs)
    state = (runs, [specs] * len(runs), True, False)
    cut = blocks([len(r.checkpoints) for r in runs], 2, False)
    best = float("inf")
    for _ in range(repeat):
        run_block((runs, [specs] * len(runs), True, False), cut[0], False)  # NOTE: a new state: scorers rebuilt
        start = time.perf_counter()
        for task in cut:
            run_block(state, task, False)
        best = min(best, time.perf_counter() - start)
    total = sum(len(r.checkpoints) for r in runs)
    return best / total, total, len(cut)


class _Replay:
    """A pool whose outcomes were computed beforehand: the driver's own work, timed alone."""

    read_only = False

    def __init__(self, outcomes: dict) -> None:
        self._outcomes = outcomes

    def outcomes(self, run: object) -> object:
        yield from self._outcomes[id(run)]

    def close(self) -> None:
        pass


def driver_seconds(sweep: Path, metric: str, repeat: int) -> float:
    """The Ray driver's work on ``sweep`` without the tasks': discovery, parsing, putting the
    outcomes back in order, the reduce and rendering the JSON (the outcomes computed
    beforehand, untimed); best of ``repeat``, in this process (imports not counted)."""
    import ckptaudit.sweep as sweep_module
    from ckptaudit.parallel import blocks, run_block
    from ckptaudit.ranking import rank_checkpoints
    from ckptaudit.render import render
    from ckptaudit.views import ranking_document

    real = sweep_module.start_pool
    spent = [0.0]

    def replay(runs, specs, jobs, **kw):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        state = (list(runs), list(specs), True, False)
        out: dict = {id(r): [] for r in runs}
        for task in blocks([len(r.checkpoints) for r in runs], 2, False):
            for r, _, items in run_block(state, task, False):
                out[id(runs[r])].extend(items)
        spent[0] += time.perf_counter() - start
        return _Replay(out)

    sweep_module.start_pool = replay
    try:
        best = float("inf")
        for _ in range(repeat):
            spent[0] = 0.0
            start = time.perf_counter()
            ranking = rank_checkpoints([sweep], [metric], jobs=1)
            render(ranking_document(ranking, show_ci=False, show_flags=False), "json")
            best = min(best, time.perf_counter() - start - spent[0])
        return best
    finally:
        sweep_module.start_pool = real


def task_overhead(address: str, tasks: int = 400) -> tuple[float, float, float, float]:
    """(o: seconds of cluster time per no-op task, C: seconds to reach the cluster, W:
    seconds until the command's first tasks ran: its workers started, S: seconds to leave
    the cluster) measured in a fresh process against the running head."""
    code = f"""
import time
t0 = time.perf_counter()
import ray
ray.init(address={address!r}, include_dashboard=False, log_to_driver=False)
c = time.perf_counter() - t0
f = ray.remote(num_cpus=1)(lambda x: x)
cpus = int(ray.cluster_resources().get("CPU", 1))
t2 = time.perf_counter()
g = ray.remote(num_cpus=1)(lambda: __import__("ckptaudit.metrics.evaluation") and None)
ray.get([g.remote() for i in range(cpus)])  # this job's workers start (Ray's are per job) and import what a block needs
w = time.perf_counter() - t2
t1 = time.perf_counter()
ray.get([f.remote([(0, i, i + 1)]) for i in range({tasks})])
o = (time.perf_counter() - t1) * cpus / {tasks}
t3 = time.perf_counter()
ray.shutdown()
print(o, c, w, time.perf_counter() - t3)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), float(out[2]), float(out[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--metric", default="roc_auc")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the sweep (default: a temp folder)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-ray-")) if args.dir is None else args.dir
    sweep = work / "sweep"
    if not sweep.exists():
        build_sweep(sweep, args.checkpoints, args.rows, args.runs)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    os.environ.pop("RAY_ADDRESS", None)
    # NOTE: a local bench cluster: Ray's token authentication off for the head and its clients
    os.environ["RAY_AUTH_MODE"] = "disabled"
    base = [sys.executable, "-m", "ckptaudit", "rank", str(sweep), "-m", args.metric, "-f", "json"]
    results: dict[str, tuple[float, float, float, str]] = {}
    reference: list[str] = []

    def measure(name: str, cmd: list[str], head: subprocess.Popen | None, repeat: int) -> None:
        best = None
        for _ in range(repeat):
            wall, cpu, cluster, out, load = timed_rusage(cmd, head)
            reference.append(out)
            assert out == reference[0], f"{name}: output differs from local -j1"
            if best is None or wall < best[0]:
                best = (wall, cpu, cluster, load)
        assert best is not None
        results[name] = best

    measure("local -j1", [*base, "--jobs", "1"], None, args.repeat)
    measure("local -j2", [*base, "--jobs", "2"], None, args.repeat)
    # NOTE: before the head starts (a plain ray.init() connects to a running local cluster)
    measure("ray, local Ray started", [*base, "--engine", "ray"], None, 1)
    port = free_port()
    address = f"127.0.0.1:{port}"
    ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    # NOTE: its own temp dir (short: socket paths), so that no other Ray on this machine
    # connects to it by accident; --block keeps one process, stopped by its pid
    temp = tempfile.mkdtemp(prefix="rb", dir="/tmp")
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--num-cpus", "2", "--port", str(port), "--temp-dir", temp,
         "--include-dashboard=false", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or head.poll() is not None:
                    raise SystemExit("the Ray head did not start") from None
                time.sleep(0.5)
        time.sleep(3)  # the raylet registers after the GCS answers
        measure("ray @head (2 CPUs)", [*base, "--engine", "ray", "--address", address], head, args.repeat)
        print(f"sweep: {args.checkpoints} checkpoints x {args.rows} rows in {args.runs} runs, rank -m {args.metric}")
        print(f"{'command':<26} {'wall s':>8} {'CPU s':>8} {'cluster CPU s':>14}  load at start")
        for name, (wall, cpu, cluster, load) in results.items():
            print(f"{name:<26} {wall:8.2f} {cpu:8.2f} {cluster:14.2f}  {load}")
        print(f"stdout identical in all {len(reference)} commands: yes (asserted)")
        t_c, n, _ = per_checkpoint_seconds(sweep, args.metric, args.repeat)
        # NOTE: the least of --repeat measurements of each term, as the walls are the best of --repeat
        terms = [task_overhead(address) for _ in range(args.repeat)]
        o, c0, w, leave = (min(t[k] for t in terms) for k in range(4))
        c = c0 + w + leave
        one = work / "one"
        if not one.exists():
            build_sweep(one, 1, args.rows, 1)
        d0 = min(
            timed_rusage(
                [sys.executable, "-m", "ckptaudit", "rank", str(one), "-m", args.metric, "-f", "json", "--jobs", "1"], None
            )[0]
            for _ in range(args.repeat)
        )
        local = results["local -j1"][0]
        # NOTE: the driver's own part per checkpoint: its work on the sweep less its work on one checkpoint
        driver_n, driver_1 = driver_seconds(sweep, args.metric, args.repeat), driver_seconds(one, args.metric, args.repeat)
        d = max(0.0, (driver_n - driver_1) / max(1, n - 1))
        print(
            f"\nmodel terms: N = {n}, t_c = {t_c * 1e3:.2f} ms/checkpoint, o = {o * 1e3:.2f} ms/task, "
            f"D0 = {d0:.2f} s, d = {d * 1e3:.2f} ms/checkpoint, "
            f"C = {c:.2f} s (connect {c0:.2f} + this command's workers start {w:.2f} + leave {leave:.2f})"
        )
        print("local:  T = D0 + N (d + t_c)   (model; local -j1 measured above)")
        print("Ray:    T(n nodes, c CPUs each) = C + D0 + N d + (N t_c + 8 n c o) / (n c)")

        def ray_time(count: int, nodes: int, cpus: int) -> float:
            return c + d0 + count * d + (count * t_c + 8 * nodes * cpus * o) / (nodes * cpus)

        print(
            f"  check, 1 node x 2 CPUs: model {ray_time(n, 1, 2):.2f} s, measured (ray @head) {results['ray @head (2 CPUs)'][0]:.2f} s"
        )
        print(f"  check, local -j1: model {d0 + n * (d + t_c):.2f} s, measured {local:.2f} s")
        for count in (n, 100_000):
            here = local if count == n else d0 + count * (d + t_c)
            label = "measured" if count == n else "modelled"
            print(f"  N = {count:,} checkpoints of this size: local -j1 {here:.1f} s ({label})")
            for nodes, cpus in ((10, 2), (10, 16)):
                t = ray_time(count, nodes, cpus)
                print(f"    {nodes} nodes x {cpus:>2} CPUs: T = {t:8.1f} s, speed-up vs local -j1 {here / t:6.2f}x")
        bound = (d + t_c) / d if d > 0 else float("inf")
        print(f"  bound as nodes grow (Amdahl: the driver's N d stays): speed-up <= (d + t_c) / d = {bound:.1f}x")
        for nodes, cpus in ((10, 2), (10, 16)):
            share = 1 - 1 / (nodes * cpus)
            # NOTE: Ray beats local -j1 once the work it spreads saves more than it adds: N t_c (1 - 1/(n c)) > C + 8 o
            need = (c + 8 * o) / (t_c * share)
            print(f"  break-even at {nodes} x {cpus} CPUs: N > {need:,.0f} checkpoints of this size")
    finally:
        head.terminate()
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(temp, ignore_errors=True)
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
