"""import + predict: real tiny training with each framework, then rank/audit/pick/check.

Each source is produced by really training with the framework (Lightning, Hugging Face
Trainer, Keras on the torch backend, a plain torch loop); the predicted accuracy of every
checkpoint is checked against the accuracy the framework itself logged on the same rows.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptaudit.cli import app

HERE = Path(__file__).resolve().parent
MODELS = HERE / "inference_models.py"
runner = CliRunner()

import inference_models as im  # noqa: E402  (tests/ is on sys.path under pytest)


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def spec(fn: str) -> str:
    return f"{MODELS}:{fn}"


def accuracy(run: Path, ckpt: str) -> float:
    with np.load(run / "checkpoints" / ckpt / "val.npz") as z:
        return float((z["output"].argmax(1) == z["target"]).mean())


def accepted(run: Path, metric: str) -> None:
    """rank, audit, pick and check all read the run (exit 0 or 1, never 2)."""
    for args in (
        ("rank", run, "-m", metric),
        ("audit", run, "--metric", metric),
        ("pick", run, "-m", metric),
        ("check", run, "-m", metric),
    ):
        result = cli(*args)
        assert result.exit_code in (0, 1), (args, result.output)


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plain")
    im.train_plain(root / "weights", recorder_run=root / "recorded")
    return {"root": root, "weights": root / "weights", "recorded": root / "recorded"}


def hashes(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()
    }


# --------------------------------------------------------------------------- recorder round trip


def test_predict_reproduces_the_recorder_bit_for_bit(plain, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(plain["recorded"], run)
    for npz in run.rglob("*.npz"):
        npz.unlink()
    result = cli(
        "predict", run, "--model", spec("mlp"), "--data", spec("val_data"), "--train-data", spec("train_data"), "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    for ckpt in sorted((plain["recorded"] / "checkpoints").iterdir()):
        for split in ("val", "train"):
            with np.load(ckpt / f"{split}.npz") as a, np.load(run / "checkpoints" / ckpt.name / f"{split}.npz") as b:
                for key in ("target", "output", "id", "input_hash"):
                    assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), (ckpt.name, split, key)
    ranked = [cli("rank", r, "-m", "recall", "-m", "log_loss", "-f", "json") for r in (plain["recorded"], run)]
    strip = [[{k: v for k, v in row.items() if k != "run"} for row in json.loads(r.output)] for r in ranked]
    assert strip[0] == strip[1]


def test_other_batch_sizes_stay_within_tolerance(plain, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(plain["recorded"], run)
    for npz in run.rglob("val.npz"):
        npz.unlink()
    assert cli("predict", run, "--model", spec("mlp"), "--data", spec("val_loader"), "--batch-size", "7").exit_code == 0
    for ckpt in sorted((plain["recorded"] / "checkpoints").iterdir()):
        with np.load(ckpt / "val.npz") as a, np.load(run / "checkpoints" / ckpt.name / "val.npz") as b:
            np.testing.assert_allclose(a["output"], b["output"], rtol=1e-5, atol=1e-6)
            assert np.array_equal(a["id"], b["id"]) and np.array_equal(a["input_hash"], b["input_hash"])


# --------------------------------------------------------------------------- files (plain loop)


def test_files_import_links_weights_and_predicts(plain, tmp_path):
    before = hashes(plain["weights"])
    run = tmp_path / "run"
    result = cli(
        "import",
        "files",
        f"{plain['weights']}/model_epoch_*.pt",
        run,
        "--task",
        "multiclass",
        "--epoch-pattern",
        "model_epoch_{epoch}.pt",
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["epoch-0001", "epoch-0002", "epoch-0003", "epoch-0004"]
    for e in range(1, 5):
        linked = run / "checkpoints" / f"epoch-{e:04d}" / f"model_epoch_{e}.pt"
        assert linked.stat().st_ino == (plain["weights"] / f"model_epoch_{e}.pt").stat().st_ino  # a hard link, not a copy
    assert cli("predict", run, "--model", spec("mlp"), "--data", spec("val_data"), "--workers", "2").exit_code == 0
    # the plain loop's weights give exactly the recorder's predictions
    for e in range(1, 5):
        with np.load(plain["recorded"] / "checkpoints" / f"epoch-{e:04d}" / "val.npz") as a:
            with np.load(run / "checkpoints" / f"epoch-{e:04d}" / "val.npz") as b:
                assert np.array_equal(a["output"], b["output"])
    accepted(run, "recall")
    shutil.rmtree(run)
    assert hashes(plain["weights"]) == before  # originals never moved, changed or deleted


def test_unmatched_epoch_pattern_is_a_clear_error(plain, tmp_path):
    result = cli(
        "import",
        "files",
        f"{plain['weights']}/*.pt",
        tmp_path / "run",
        "--task",
        "multiclass",
        "--epoch-pattern",
        "weights-{epoch}.pt",
    )
    assert result.exit_code == 2
    assert "does not match" in result.output and "model_epoch_1.pt" in result.output
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- lightning


@pytest.fixture(scope="module")
def lightning_src(tmp_path_factory) -> Path:
    pytest.importorskip("lightning")
    return im.train_lightning(tmp_path_factory.mktemp("lightning"))


def test_lightning_import_orders_by_epoch_and_reads_the_best(lightning_src, tmp_path):
    run = tmp_path / "run"
    result = cli("import", "lightning", lightning_src, run, "--task", "binary")
    assert result.exit_code == 0, result.output
    info = json.loads((run / "run.json").read_text())
    metas = {p.name: json.loads((p / "meta.json").read_text()) for p in (run / "checkpoints").iterdir()}
    assert sorted(metas) == ["epoch-0000", "epoch-0001", "epoch-0002"]  # last.ckpt is not imported twice
    assert [metas[n]["step"] for n in sorted(metas)] == sorted(metas[n]["step"] for n in metas)
    accs = {n: m["logged"]["val_acc"] for n, m in metas.items()}
    assert all("val_loss" in m["logged"] for m in metas.values())  # from metrics.csv
    assert info["selected_by"] == {"metric": "val_acc", "mode": "max"}
    assert info["chosen"] == max(sorted(accs), key=lambda n: accs[n])
    assert cli("predict", run, "--model", spec("lightning_net"), "--data", spec("val_data")).exit_code == 0
    for name, logged in accs.items():
        assert accuracy(run, name) == pytest.approx(logged, abs=1e-6)  # what Lightning measured itself
    accepted(run, "accuracy")


# --------------------------------------------------------------------------- hugging face


@pytest.fixture(scope="module")
def hf_src(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    pytest.importorskip("safetensors")
    return im.train_hf(tmp_path_factory.mktemp("hf") / "out")


def test_hf_import_keeps_rotated_evaluations_as_metrics_only(hf_src, tmp_path):
    run = tmp_path / "run"
    result = cli("import", "hf", hf_src, run, "--task", "binary", "-f", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    kinds = {c["checkpoint"]: c["weights"] for c in doc["checkpoints"]}
    survivors = sorted(p.name for p in hf_src.glob("checkpoint-*"))
    assert len(kinds) == 4 and len(survivors) == 2
    assert all((kinds[n] == "hardlink") == (n in survivors) for n in kinds)
    state = json.loads((hf_src / max(survivors, key=lambda n: int(n.split("-")[1])) / "trainer_state.json").read_text())
    info = json.loads((run / "run.json").read_text())
    assert info["chosen"] == Path(state["best_model_checkpoint"]).name
    assert info["selected_by"] == {"metric": "eval_accuracy", "mode": "max"}
    assert cli("predict", run, "--model", spec("hf_model"), "--data", spec("hf_val_data")).exit_code == 0
    for name in survivors:
        logged = json.loads((run / "checkpoints" / name / "meta.json").read_text())["logged"]["eval_accuracy"]
        assert accuracy(run, name) == pytest.approx(logged, abs=1e-9)
    rows = json.loads(cli("rank", run, "-m", "accuracy", "-m", "eval_accuracy:mode=max", "-f", "json").stdout)
    assert [r["checkpoint"] for r in rows[2:]] == sorted(set(kinds) - set(survivors))  # metrics-only listed last
    assert all("metrics-only" in " ".join(r["notes"]) for r in rows[2:])
    by_logged = cli("rank", run, "-m", "eval_accuracy:mode=max", "-f", "json")
    assert by_logged.exit_code == 0 and all(r["eval_accuracy:mode=max"] is not None for r in json.loads(by_logged.stdout))
    accepted(run, "accuracy")


# --------------------------------------------------------------------------- keras


@pytest.fixture(scope="module")
def keras_src(tmp_path_factory) -> Path:
    pytest.importorskip("keras")
    pytest.importorskip("h5py")
    return im.train_keras(tmp_path_factory.mktemp("keras"))


def test_keras_import_needs_the_epoch_pattern_and_predicts(keras_src, tmp_path):
    bad = cli("import", "keras", keras_src, tmp_path / "bad", "--task", "multiclass", "--epoch-pattern", "model-{epoch}.keras")
    assert bad.exit_code == 2 and "does not match" in bad.output
    assert cli("import", "keras", keras_src, tmp_path / "none", "--task", "multiclass").exit_code == 2
    run = tmp_path / "run"
    result = cli(
        "import",
        "keras",
        keras_src,
        run,
        "--task",
        "multiclass",
        "--output",
        "probability",
        "--epoch-pattern",
        "epoch{epoch:02d}-{val_accuracy:.4f}.keras",
        "--metrics-csv",
        keras_src / "log.csv",
        "--selected-by",
        "val_accuracy:max",
    )
    assert result.exit_code == 0, result.output
    assert cli("predict", run, "--model", spec("keras_model"), "--data", spec("val_data")).exit_code == 0
    for ckpt in sorted((run / "checkpoints").iterdir()):
        logged = json.loads((ckpt / "meta.json").read_text())["logged"]
        assert accuracy(run, ckpt.name) == pytest.approx(logged["val_accuracy"], abs=1e-6)  # CSVLogger, epoch-1
    accepted(run, "accuracy")


# --------------------------------------------------------------------------- safety


def test_a_malicious_pickle_never_runs_without_trust_pickle(plain, lightning_src, tmp_path):
    marker = tmp_path / "pwned"
    src = tmp_path / "evil"
    src.mkdir()
    shutil.copy(plain["weights"] / "model_epoch_1.pt", src / "model_epoch_1.pt")
    im.write_malicious(src / "model_epoch_2.pt", marker)
    refused = cli("import", "files", f"{src}/*.pt", tmp_path / "r0", "--task", "multiclass")
    assert refused.exit_code == 2 and "--trust-pickle" in refused.output and not marker.exists()
    evil_lightning = tmp_path / "evil-lightning"
    shutil.copytree(lightning_src / "checkpoints", evil_lightning)
    im.write_malicious(evil_lightning / "zz.ckpt", marker)
    refused = cli("import", "lightning", evil_lightning, tmp_path / "r1", "--task", "binary")
    assert refused.exit_code == 2 and "--trust-pickle" in refused.output and not marker.exists()
    # a run whose checkpoint holds the malicious file: every command reads it without running it
    run = tmp_path / "run"
    assert cli("import", "files", f"{plain['weights']}/*.pt", run, "--task", "multiclass").exit_code == 0
    evil = run / "checkpoints" / "epoch-0002" / "model_epoch_2.pt"
    evil.unlink()
    im.write_malicious(evil, marker)
    out = cli("predict", run, "--model", spec("mlp"), "--data", spec("val_data"))
    assert out.exit_code == 2 and "--trust-pickle" in out.output and not marker.exists()
    assert sum(1 for p in run.rglob("val.npz")) == 3  # the others were still predicted
    for args in (
        ("rank", run, "-m", "accuracy"),
        ("audit", run),
        ("pick", run, "-m", "accuracy"),
        ("check", run, "-m", "accuracy", "--chosen", evil),
        ("prune", run, "-m", "accuracy", "--keep", "1"),
    ):
        cli(*args)
        assert not marker.exists(), args
    assert cli("pick", run, "-m", "accuracy", "--copy", tmp_path / "best").exit_code in (0, 1, 2)
    assert not marker.exists()
    # the flag does what it says: it runs the file's code (so the test above could fail)
    cli("predict", run, "--model", spec("mlp"), "--data", spec("val_data"), "--trust-pickle")
    assert marker.exists()


# --------------------------------------------------------------------------- resume, data shapes, engines


def test_an_interrupted_predict_resumes(plain, tmp_path):
    from ckptaudit.inference.predict import predict

    run = tmp_path / "run"
    shutil.copytree(plain["recorded"], run)
    for npz in run.rglob("*.npz"):
        npz.unlink()
    started: list[str] = []

    def interrupt(name: str):
        started.append(name)
        if len(started) == 3:
            raise KeyboardInterrupt
        return None

    with pytest.raises(KeyboardInterrupt):
        predict(run, spec("mlp"), spec("val_data"), device="cpu", checkpoint_progress=interrupt)
    assert sorted(p.parent.name for p in run.rglob("val.npz")) == ["epoch-0001", "epoch-0002"]
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    report = predict(run, spec("mlp"), spec("val_data"), device="cpu")
    assert [e.action for e in report.entries] == ["skipped", "skipped", "predicted", "predicted"]
    for ckpt in sorted((plain["recorded"] / "checkpoints").iterdir()):
        with np.load(ckpt / "val.npz") as a, np.load(run / "checkpoints" / ckpt.name / "val.npz") as b:
            assert np.array_equal(a["output"], b["output"])
    again = cli("predict", run, "--model", spec("mlp"), "--data", spec("val_dataset"), "-f", "json")  # same rows, a Dataset
    assert again.exit_code == 0 and {e["action"] for e in json.loads(again.stdout)["entries"]} == {"skipped"}
    other = cli("predict", run, "--model", spec("mlp"), "--data", spec("train_data"))
    assert other.exit_code == 2 and "--force" in other.output


def test_a_killed_predict_leaves_whole_files_and_resumes(plain, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    shutil.copytree(plain["recorded"], run)
    for npz in run.rglob("*.npz"):
        npz.unlink()
    cmd = [
        sys.executable,
        "-m",
        "ckptaudit",
        "predict",
        str(run),
        "--model",
        spec("slow_mlp"),
        "--data",
        spec("val_data"),
        "--batch-size",
        "20",
        "--device",
        "cpu",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(run.rglob("val.npz")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.4)  # into the next checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = sorted(p.parent.name for p in run.rglob("val.npz"))
    assert 1 <= len(written) < 4
    for name in written:  # every file present is whole
        with np.load(run / "checkpoints" / name / "val.npz") as z:
            assert z["output"].shape == (169, 2)
    result = cli("predict", run, "--model", spec("mlp"), "--data", spec("val_data"), "-f", "json")
    assert result.exit_code == 0, result.output
    actions = {e["checkpoint"]: e["action"] for e in json.loads(result.stdout)["entries"]}
    assert actions == {f"epoch-{e:04d}": ("skipped" if f"epoch-{e:04d}" in written else "predicted") for e in range(1, 5)}
    assert not [p for p in run.rglob("*.tmp")]
    for ckpt in sorted((plain["recorded"] / "checkpoints").iterdir()):
        with np.load(ckpt / "val.npz") as a, np.load(run / "checkpoints" / ckpt.name / "val.npz") as b:
            if ckpt.name in written:  # predicted in batches of 20: the documented tolerance
                np.testing.assert_allclose(a["output"], b["output"], rtol=1e-5, atol=1e-6)
            else:
                assert np.array_equal(a["output"], b["output"])


def test_ray_engine_matches_the_local_engine(plain, tmp_path):
    ray = pytest.importorskip("ray")
    from ckptaudit.inference.predict import predict

    run = tmp_path / "run"
    shutil.copytree(plain["recorded"], run)
    for npz in run.rglob("*.npz"):
        npz.unlink()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = predict(run, spec("mlp"), spec("val_data"), engine="ray", train_data=spec("train_data"))
    finally:
        ray.shutdown()
    assert report.engine == "ray" and {e.action for e in report.entries} == {"predicted"} and len(report.entries) == 8
    for ckpt in sorted((plain["recorded"] / "checkpoints").iterdir()):
        for split in ("val", "train"):
            with np.load(ckpt / f"{split}.npz") as a, np.load(run / "checkpoints" / ckpt.name / f"{split}.npz") as b:
                assert np.array_equal(a["output"], b["output"]) and np.array_equal(a["input_hash"], b["input_hash"])


def test_device_option_is_checked(plain, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(plain["recorded"], run)
    result = cli("predict", run, "--model", spec("mlp"), "--data", spec("val_data"), "--device", "tpu")
    assert result.exit_code == 2 and "--device" in result.output
    import torch

    if not torch.cuda.is_available():
        result = cli("predict", run, "--model", spec("mlp"), "--data", spec("val_data"), "--device", "cuda")
        assert result.exit_code == 2 and "CUDA is not available" in result.output


def test_across_file_systems_the_run_references_the_originals(plain, tmp_path, monkeypatch):
    import errno

    from ckptaudit.inference import importers

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(importers.os, "link", no_link)
    run = tmp_path / "run"
    result = cli("import", "files", f"{plain['weights']}/*.pt", run, "--task", "multiclass", "-f", "json")
    assert result.exit_code == 0, result.output
    assert {c["weights"] for c in json.loads(result.stdout)["checkpoints"]} == {"reference"}
    assert not list(run.rglob("*.pt"))  # nothing copied
    meta = json.loads((run / "checkpoints" / "epoch-0003" / "meta.json").read_text())
    assert meta["source"]["files"] == [str((plain["weights"] / "model_epoch_3.pt").resolve())]
    assert cli("predict", run, "--model", spec("mlp"), "--data", spec("val_data")).exit_code == 0
    with np.load(plain["recorded"] / "checkpoints" / "epoch-0003" / "val.npz") as a:
        with np.load(run / "checkpoints" / "epoch-0003" / "val.npz") as b:
            assert np.array_equal(a["output"], b["output"])


def test_different_models_under_state_dict_and_model_state_dict_are_refused(plain, tmp_path):
    """As the gate refuses it: which model a loader gets depends on the loader, so predict
    fails that checkpoint (one line, exit 2) and still predicts the others; the same model
    under both keys is predicted as the model."""
    import copy

    import torch

    first = torch.load(plain["weights"] / "model_epoch_1.pt", weights_only=True)
    last = torch.load(plain["weights"] / "model_epoch_4.pt", weights_only=True)
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"epoch": 1, "model_state_dict": first, "state_dict": copy.deepcopy(first)}, src / "ckpt_1.pt")
    torch.save({"epoch": 2, "model_state_dict": first, "state_dict": last}, src / "ckpt_2.pt")
    run = tmp_path / "run"
    assert cli("import", "files", f"{src}/*.pt", run, "--task", "multiclass").exit_code == 0
    result = cli("predict", run, "--model", spec("mlp"), "--data", spec("val_data"))
    assert result.exit_code == 2, result.output
    assert "different models under 'model_state_dict' and 'state_dict'" in result.output
    assert "Traceback" not in result.output
    assert not (run / "checkpoints" / "epoch-0002" / "val.npz").exists()
    with np.load(plain["recorded"] / "checkpoints" / "epoch-0001" / "val.npz") as a:
        with np.load(run / "checkpoints" / "epoch-0001" / "val.npz") as b:
            assert np.array_equal(a["output"], b["output"])


def test_autocast_and_progress_callbacks(plain, tmp_path):
    from ckptaudit.inference.predict import predict

    run = tmp_path / "run"
    shutil.copytree(plain["recorded"], run)
    for npz in run.rglob("val.npz"):
        npz.unlink()
    overall: list[tuple[int, int]] = []
    per: dict[str, list[tuple[int, int]]] = {}

    def bar(name: str):
        per[name] = []
        return lambda done, total: per[name].append((done, total))

    report = predict(
        run,
        spec("mlp"),
        spec("val_data"),
        device="cpu",
        batch_size=50,
        autocast=True,
        progress=lambda d, t: overall.append((d, t)),
        checkpoint_progress=bar,
    )
    assert [e.action for e in report.entries] == ["predicted"] * 4
    assert overall == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert sorted(per) == ["epoch-0001", "epoch-0002", "epoch-0003", "epoch-0004"]
    assert all(calls == [(b, 4) for b in range(1, 5)] for calls in per.values())  # 169 rows in batches of 50
    for ckpt in sorted((plain["recorded"] / "checkpoints").iterdir()):
        with np.load(ckpt / "val.npz") as a, np.load(run / "checkpoints" / ckpt.name / "val.npz") as b:
            assert b["output"].dtype == np.float32 and not np.array_equal(a["output"], b["output"])  # bfloat16 really used
            np.testing.assert_allclose(a["output"], b["output"], atol=0.1)


def test_pruning_an_imported_run_never_touches_the_originals(plain, tmp_path):
    import hashlib

    def oracle(folder: Path) -> dict[str, str]:
        return {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    src = tmp_path / "src"
    shutil.copytree(plain["weights"], src)
    before = oracle(src)
    run = tmp_path / "run"
    assert cli("import", "files", f"{src}/*.pt", run, "--task", "multiclass").exit_code == 0
    assert cli("predict", run, "--model", spec("mlp"), "--data", spec("val_data")).exit_code == 0
    run_before = oracle(run)
    # the default deletes hard links whose originals survive: nothing would be freed
    dry = json.loads(cli("prune", run, "-m", "accuracy", "--keep", "1", "--keep-last", "0", "-f", "json").stdout)[0]
    assert dry["reclaimable_bytes"]["weights"] == 0
    result = cli("prune", run, "-m", "accuracy", "--keep", "1", "--keep-last", "0", "--all", "--yes", "-f", "json")
    assert result.exit_code == 0, result.output
    kept = {p.name for p in (run / "checkpoints").iterdir()}
    assert len(kept) == 1
    after = oracle(run)
    expected = {k: v for k, v in run_before.items() if not k.startswith("checkpoints/") or k.split("/")[1] in kept}
    assert {k: v for k, v in after.items() if k in run_before or k.startswith("checkpoints/")} == expected
    assert oracle(src) == before  # the hard-linked originals survive the deletion of their links


@pytest.mark.parametrize("name", ["model.pt", "model.safetensors", "model.keras"])
def test_a_fifo_or_device_is_refused_not_loaded(tmp_path, name):
    """Loading for import/predict never blocks on a FIFO or reads a device forever: the same
    regular-file check as the gate's fingerprinting, before any loader opens the file."""
    import signal

    from ckptaudit.errors import CkptauditError
    from ckptaudit.inference.loading import load_state

    def hung(*_):  # a regression blocks in open(); fail instead of stalling the suite
        raise TimeoutError("load_state blocked on a FIFO or device")

    fifo = tmp_path / name
    os.mkfifo(fifo)
    device = tmp_path / ("dev-" + name)
    device.symlink_to("/dev/zero")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        with pytest.raises(CkptauditError, match="not a regular file"):
            load_state(fifo)
        with pytest.raises(CkptauditError, match="not a regular file"):
            load_state(device)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
