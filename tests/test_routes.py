"""One question, one answer: the four routes into a run give the same verdict.

One tiny real training per task (binary, multiclass, regression; torch, seeded, CPU), written
four ways (tests/route_models.py):

1. ``recorded``: the plain loop records with :class:`ckptaudit.Recorder`;
2. ``files``: the same loop's ``checkpoint_epoch_{N}.pth`` and ``best_model.pth``, brought in
   by ``import files`` (no ``--task``: read from the data at ``predict``) + ``predict``;
3. ``lightning``: the same training under Lightning, its ``.ckpt`` files brought in by
   ``import lightning`` + ``predict``;
4. ``callback``: that Lightning training recorded by ``CkptauditCallback``.

Same weights (checked bit for bit), same validation rows -> the same verdict, compared
exactly (no tolerance): every value, interval, tie set and winner estimate of ``rank --ci``
and ``pick``, the chosen checkpoint, every rule of ``check`` and every exit code, all from
the installed console script. :func:`verdicts` is the one place that assembles it, so it can
read the single verdict JSON instead once there is one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("lightning")

import route_models as rm  # noqa: E402  (tests/ is on sys.path under pytest)

from ckptaudit.cli import app  # noqa: E402

HERE = Path(__file__).resolve().parent
MODELS = HERE / "route_models.py"
ROUTES = ("recorded", "files", "lightning", "callback")
#: the policy metric of each task: not the val_loss training selected by, so the gate's
#: selected-by-matches rule must fail on every route (the defect: it passed on `import files`)
METRIC = {"binary": "recall", "multiclass": "accuracy", "regression": "mae"}

runner = CliRunner()


def cli(*args) -> object:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (args, result.output)
    return result


def console(*args) -> subprocess.CompletedProcess:
    """The installed console script (``python -m ckptaudit`` where it is not on PATH)."""
    exe = shutil.which("ckptaudit")
    cmd = [exe] if exe else [sys.executable, "-m", "ckptaudit"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([*cmd, *(str(a) for a in args)], capture_output=True, text=True, env=env, timeout=300)


#: what legitimately differs between routes and is no part of the verdict: the inventory of
#: the weights files (names and hashes: model.pt, checkpoint_epoch_3.pth, epoch=3-step=16.ckpt),
#: the clock, and the training step counter, which a plain loop's files do not carry
ROUTE_SPECIFIC = ("files", "time", "step")


def _placeless(doc, run: Path):
    """The document with the run's own path replaced by RUN and the route-specific keys left
    out wherever they stand (rank's rows, the verdict's checkpoints inside check's JSON)."""
    text = json.dumps(doc, sort_keys=True)
    for s in (str(run.resolve()), str(run)):
        text = text.replace(s, "RUN")

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ROUTE_SPECIFIC}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(json.loads(text))


VIEWS = {
    "rank": ("rank", "{run}", "-m", "{metric}", "--ci", "-f", "json"),
    "pick": ("pick", "{run}", "-m", "{metric}", "-f", "json"),
    "check": ("check", "{run}", "-m", "{metric}", "-f", "json"),
}


def verdicts(runs: dict[str, Path], metric: str) -> dict[str, dict]:
    """Everything a user is told about each run under ``metric``: rank --ci, pick and check as
    JSON, with each exit code, per route. (To be switched to ``report -o verdict.json`` /
    ``ckptaudit.evaluate`` when the single verdict lands: this is the one place to change.)"""
    from concurrent.futures import ThreadPoolExecutor

    calls = {
        (route, view): [a.format(run=run, metric=metric) for a in args]
        for route, run in runs.items()
        for view, args in VIEWS.items()
    }
    # NOTE: processes of their own, so a few at once halve the wall time on two cores
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = dict(zip(calls, pool.map(lambda args: console(*args), calls.values()), strict=True))
    out: dict[str, dict] = {route: {} for route in runs}
    for (route, view), proc in done.items():
        assert proc.returncode in (0, 1), (route, view, proc.stderr)
        out[route][view] = {"exit": proc.returncode, "json": _placeless(json.loads(proc.stdout), runs[route])}
    return out


def differences(a, b, path: str = "") -> list[str]:
    """Where two JSON documents differ, as ``path: a != b`` lines (exact comparison)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: missing on one side" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def _predict(run: Path, task: str) -> None:
    cli("predict", run, "--model", f"{MODELS}:net_{task}", "--data", f"{MODELS}:val_{task}", "--device", "cpu")


@pytest.fixture(scope="module", params=rm.TASKS)
def runs(request, tmp_path_factory) -> dict:
    task = request.param
    root = tmp_path_factory.mktemp(task)
    plain = rm.train_plain(task, root)
    light = rm.train_lightning(task, root)
    out = {"task": task, "root": root, "best_epoch": plain["best_epoch"], "best_model_path": light["best_model_path"]}
    out["recorded"] = root / "recorded"
    out["callback"] = root / "callback"
    # the glob catches best_model.pth too: it is recognised as the copy training kept
    files = cli("import", "files", f"{root}/files/*.pth", root / "imported-files", "--selected-by", "val_loss:min")
    assert "best_model.pth holds the tensors of" in files.output
    out["files"] = root / "imported-files"
    cli("import", "lightning", root / "lightning", root / "imported-lightning")
    out["lightning"] = root / "imported-lightning"
    for route in ("files", "lightning"):
        _predict(out[route], task)
    return out


def test_the_four_routes_hold_the_same_weights_and_rows(runs):
    import torch

    root, task = runs["root"], runs["task"]
    for epoch in range(rm.EPOCHS):
        name = f"epoch-{epoch:04d}"
        plain = torch.load(root / "files" / f"checkpoint_epoch_{epoch}.pth", weights_only=True)
        recorded = torch.load(runs["recorded"] / "checkpoints" / name / "model.pt", weights_only=True)
        called = torch.load(runs["callback"] / "checkpoints" / name / "model.pt", weights_only=True)
        ckpt = next((root / "lightning" / "checkpoints").glob(f"epoch={epoch}-*.ckpt"))
        lightning = torch.load(ckpt, weights_only=True)["state_dict"]
        for key, value in plain.items():
            assert torch.equal(value, recorded[key]) and torch.equal(value, called["net." + key])
            assert torch.equal(value, lightning["net." + key])
        arrays = []
        for route in ROUTES:
            with np.load(runs[route] / "checkpoints" / name / "val.npz") as z:
                arrays.append({k: z[k] for k in ("target", "output", "id", "input_hash")})
        for other in arrays[1:]:
            for key, value in arrays[0].items():
                assert value.dtype == other[key].dtype and np.array_equal(value, other[key]), (task, name, key)
    assert rm.run_json(runs["files"])["task"] == task  # read from the data at predict, not guessed at import


def test_every_route_gives_the_same_verdict(runs):
    metric = METRIC[runs["task"]]
    seen = verdicts({route: runs[route] for route in ROUTES}, metric)
    reference = seen["recorded"]
    chosen = f"epoch-{runs['best_epoch']:04d}"
    assert reference["check"]["json"]["chosen"] == chosen
    rules = {r["name"]: r for r in reference["check"]["json"]["rules"]}
    assert not rules["selected-by-matches"]["passed"] and not rules["selected-by-matches"]["skipped"]
    assert reference["check"]["exit"] == 1
    found = {route: differences(reference, seen[route]) for route in ROUTES[1:]}
    report = [f"{runs['task']} {route} {d}" for route, ds in found.items() for d in ds]
    assert not report, "\n".join(report)


def test_check_by_the_kept_file_fails_on_both_plain_routes(runs):
    """`check --chosen best_model.pth`: identified by tensor content on the recorded run and on
    the imported one, and the gate fails the same way (it passed before: no selected_by)."""
    best = runs["root"] / "files" / "best_model.pth"
    metric = METRIC[runs["task"]]
    results = []
    for route in ("recorded", "files"):
        done = console("check", runs[route], "-m", metric, "--chosen", best, "-f", "json")
        doc = json.loads(done.stdout)
        rules = {r["name"]: (r["passed"], r["skipped"]) for r in doc["rules"]}
        results.append((done.returncode, doc["chosen"], rules))
    assert results[0] == results[1]
    assert results[0][0] == 1 and results[0][2]["selected-by-matches"] == (False, False)
