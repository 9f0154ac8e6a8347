"""Issue 25's scale simulation: a synthetic sweep of many small checkpoints, on local disk and
in a local S3 API server (moto's server mode behind the counting proxy of tests/s3proxy.py),
ranked and picked by fresh `ckptaudit` processes; time, CPU and peak memory per process, and
(on S3) the requests and bytes each command asked of the store, per checkpoint.

    python bench/scale_sim.py [--sizes 1000,10000,100000] [--s3-sizes 1000,10000]
                              [--per-run 100] [--rows 200] [--jobs 1] [--out /tmp]

The sweep is bench_linear.py's: binary runs of PER_RUN checkpoints, ROWS rows each, one
meta.json and one val.npz per checkpoint (about 2.4 KB at 200 rows). Linear cost keeps the
per-checkpoint columns flat as the sweep grows; bounded memory keeps peak RSS flat.
Peak RSS comes from os.wait4, which on Linux reports the largest of the process and the
workers it waited for: the memory one machine (driver or worker) needs.
The S3 sizes are smaller than the disk sizes because moto's server stores ~250 objects/s
on this machine (2 cores): 100,000 checkpoints are 200,000 objects, 15-20 minutes of upload.
The per-checkpoint request and byte counts are what the design in docs/scale.md multiplies.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "tests"))
from bench_linear import ensure  # noqa: E402
from bench_scale import child_env, precompile  # noqa: E402


def measured(cmd: list[str], env: dict[str, str]) -> dict:
    """Exit code, wall and CPU seconds and peak MiB of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace").strip().splitlines() if proc.stderr else []
    return {
        "exit": code,
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_mib": round(usage.ru_maxrss / 1024, 1),
        "error": err[-1] if code not in (0, 1) and err else None,
    }


def upload(endpoint: str, local: Path, bucket: str, threads: int = 16) -> float:
    """Copy a local sweep into the bucket (boto3, parallel puts); the seconds it took."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    files = [p for p in local.rglob("*") if p.is_file()]
    start = time.perf_counter()

    def put(path: Path) -> None:
        client.upload_file(str(path), bucket, "sweep/" + path.relative_to(local).as_posix())

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, files))
    return time.perf_counter() - start


VERBS = {"rank": ["rank", "-m", "recall", "-f", "json"], "pick": ["pick", "-m", "recall", "-f", "json", "--resamples", "200"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--s3-sizes", default="1000,10000")
    parser.add_argument("--per-run", type=int, default=100)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--jobs", default="1")
    parser.add_argument("--verbs", default="rank,pick")
    parser.add_argument("--out", type=Path, default=Path("/tmp"))
    args = parser.parse_args(argv)
    precompile()
    env = child_env(args.jobs)
    exe = [sys.executable, "-m", "ckptaudit"]
    verbs = [v for v in args.verbs.split(",") if v]
    cache = args.out / "scale-sim-cache"
    results: list[dict] = []
    print(f"scale_sim  {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}  load {os.getloadavg()[0]:.1f}  jobs {args.jobs}")
    print(
        f"{'store':<6} {'ckpts':>8} {'verb':<5} {'wall s':>8} {'cpu s':>8} {'ms/ckpt':>8} {'peak MiB':>9} {'req/ckpt':>9} {'KB/ckpt':>8}"
    )

    def show(row: dict) -> None:
        results.append(row)
        n = row["checkpoints"]
        req = "-" if row.get("requests") is None else f"{row['requests'] / n:.2f}"
        kb = "-" if row.get("bytes") is None else f"{row['bytes'] / n / 1024:.2f}"
        print(
            f"{row['store']:<6} {n:>8,} {row['verb']:<5} {row['wall_s']:>8.2f} {row['cpu_s']:>8.2f} "
            f"{row['wall_s'] / n * 1e3:>8.3f} {row['peak_mib']:>9.0f} {req:>9} {kb:>8}"
            + (f"  {row['error']}" if row.get("error") else ""),
            flush=True,
        )

    for n in (int(s) for s in args.sizes.split(",") if s):
        data = ensure(cache, n, max(1, n // args.per_run), args.rows)
        for verb in verbs:
            show(
                {
                    "store": "disk",
                    "checkpoints": n,
                    "verb": verb,
                    **measured(exe + VERBS[verb][:1] + [str(data)] + VERBS[verb][1:], env),
                }
            )

    s3_sizes = [int(s) for s in args.s3_sizes.split(",") if s]
    if s3_sizes:
        from s3server import make_bucket, start_fault_proxy, start_moto

        server = start_moto()
        try:
            for n in s3_sizes:
                proxy = start_fault_proxy(server.endpoint)
                try:
                    s3env = {**env, **proxy.env()}
                    os.environ.update(proxy.env())
                    bucket = make_bucket(proxy.endpoint)
                    data = ensure(cache, n, max(1, n // args.per_run), args.rows)
                    seconds = upload(proxy.endpoint, data, bucket)
                    print(f"  uploaded {n:,} checkpoints in {seconds:.1f} s", flush=True)
                    for verb in verbs:
                        before = proxy.stats()
                        row = measured(exe + VERBS[verb][:1] + [f"s3://{bucket}/sweep"] + VERBS[verb][1:], s3env)
                        after = proxy.stats()
                        row["requests"] = after["requests"] - before["requests"]
                        row["bytes"] = after["bytes_out"] - before["bytes_out"]
                        show({"store": "s3", "checkpoints": n, "verb": verb, **row})
                finally:
                    proxy.stop()
        finally:
            server.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale_sim-latest.json").write_text(
        json.dumps({"jobs": args.jobs, "rows": args.rows, "results": results}, indent=1)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
