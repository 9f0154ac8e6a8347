"""The gate judges the file that was shipped: re-saved weights are identified by tensor
content (torch state_dict, checkpoint dict, safetensors, .keras), identical weights are
reported as ambiguous, and nothing a run holds (a link to /dev/zero, a FIFO) can hang it.

Every run here is real training: a small torch net on scikit-learn's bundled breast-cancer
data, recorded by :class:`ckptaudit.Recorder`, with the seed's own "save the best so far"
loop writing ``best_model.pth``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.store.recorder import Recorder
from ckptaudit.store.weights import fingerprint_state, sha256_file, tensor_fingerprint, weight_hashes

torch = pytest.importorskip("torch")
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def _data():
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    x, y = x[order].astype(np.float32), y[order].astype(np.int64)
    mu, sd = x[:400].mean(axis=0), x[:400].std(axis=0)
    x = (x - mu) / sd
    return (x[:400], y[:400]), (x[400:], y[400:])


def train(root: Path, *, epochs: int = 6, keep_best_so_far: bool = False, seed: int = 0, lr: float = 0.05) -> dict:
    """Train and record a run; also write what the seed's loop ships: ``best_model.pth``
    (``torch.save(model.state_dict(), ...)``), a checkpoint dict and a safetensors file.

    With ``keep_best_so_far`` each epoch records the best model so far (training that
    re-saves "best so far"), so epochs without improvement hold identical weights."""
    torch.manual_seed(seed)
    (xtr, ytr), (xva, yva) = _data()
    model = torch.nn.Sequential(torch.nn.Linear(30, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rec = Recorder(root / "run", task="binary", output="logit", selected_by={"metric": "val_loss", "mode": "min"})
    xt, yt, xv, yv = map(torch.from_numpy, (xtr, ytr.astype(np.float32), xva, yva.astype(np.float32)))
    best_loss, best_state, best_epoch, best_logits = float("inf"), None, None, None
    for epoch in range(1, epochs + 1):
        model.train()
        for i in range(0, len(xt), 50):
            opt.zero_grad()
            loss_fn(model(xt[i : i + 50]).squeeze(1), yt[i : i + 50]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = model(xv).squeeze(1)
            val_loss = float(loss_fn(logits, yv))
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state, best_logits = copy.deepcopy(model.state_dict()), logits.clone()
            torch.save(model.state_dict(), root / "best_model.pth")  # the seed's loop
            torch.save(
                {"epoch": epoch, "model_state_dict": model.state_dict(), "optimizer_state_dict": opt.state_dict()},
                root / "best_ckpt.pth",
            )
        if keep_best_so_far:
            rec.save(epoch, best_state, val_target=yva, val_output=best_logits.numpy(), logged={"val_loss": best_loss})
        else:
            rec.save(epoch, model, val_target=yva, val_output=logits.numpy(), logged={"val_loss": val_loss})
    return {"run": root / "run", "best": f"epoch-{best_epoch:04d}", "best_state": best_state}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    return train(tmp_path_factory.mktemp("trained"))


def gate(*args) -> tuple[int, dict]:
    result = runner.invoke(app, ["check", *map(str, args), "--format", "json", "--resamples", "200"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


# ---------------------------------------------------------------- re-saved weights


def test_resaved_state_dict_is_identified_by_tensor_content(trained):
    run, best = trained["run"], trained["best"]
    shipped = run.parent / "best_model.pth"
    # the bytes differ (torch writes the file's stem into the zip), the tensors do not
    assert sha256_file(shipped) != sha256_file(run / "checkpoints" / best / "model.pt")
    _, doc = gate(run, "-m", "val_loss", "--chosen", shipped)
    assert doc["chosen"] == best and doc["matches"] == [best]
    assert doc["chosen_how"] == f"tensor content matches {best}/model.pt"


def test_recorded_fingerprint_equals_the_file_and_the_gate_works_without_it(trained, tmp_path):
    import shutil

    run = shutil.copytree(trained["run"], tmp_path / "run")
    meta_path = run / "checkpoints" / trained["best"] / "meta.json"
    entry = json.loads(meta_path.read_text())["weights"]["model.pt"]
    model_pt = meta_path.parent / "model.pt"
    assert entry["tensors"] == tensor_fingerprint(model_pt) == fingerprint_state(trained["best_state"])
    assert entry["sha256"] == sha256_file(model_pt) and entry["size"] == model_pt.stat().st_size
    for meta in run.glob("checkpoints/*/meta.json"):  # a run written by another tool
        data = json.loads(meta.read_text())
        del data["weights"]
        meta.write_text(json.dumps(data))
    _, doc = gate(run, "-m", "val_loss", "--chosen", trained["run"].parent / "best_model.pth")
    assert doc["chosen"] == trained["best"] and doc["chosen_how"].startswith("tensor content matches")


def test_a_checkpoint_dict_is_identified_by_its_model_state_dict(trained):
    _, doc = gate(trained["run"], "-m", "val_loss", "--chosen", trained["run"].parent / "best_ckpt.pth")
    assert doc["chosen"] == trained["best"]


def test_resaved_safetensors_file_and_folder_are_identified(trained, tmp_path):
    save_file = pytest.importorskip("safetensors.torch").save_file
    shipped = tmp_path / "model.safetensors"
    save_file(trained["best_state"], str(shipped))
    _, doc = gate(trained["run"], "-m", "val_loss", "--chosen", shipped)
    assert doc["chosen"] == trained["best"] and doc["chosen_how"] == f"tensor content matches {trained['best']}/model.pt"
    # a folder as save_pretrained writes it: weights plus a config without tensors
    folder = tmp_path / "export"
    folder.mkdir()
    save_file(trained["best_state"], str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"hidden": 8}')
    _, doc = gate(trained["run"], "-m", "val_loss", "--chosen", folder)
    assert doc["chosen"] == trained["best"] and doc["chosen_how"].startswith("folder tensor content matches")


def test_weights_of_another_training_match_nothing(trained, tmp_path):
    other = train(tmp_path, epochs=1, seed=1)
    result = runner.invoke(
        app, ["check", str(trained["run"]), "-m", "val_loss", "--chosen", str(other["run"].parent / "best_model.pth")]
    )
    assert result.exit_code == 2 and "matches no weights file" in result.stderr and "tensor content" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_file_needing_code_to_unpickle_is_refused_not_run(trained, tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"w": torch.zeros(2), "x": Payload()}, evil)
    result = runner.invoke(app, ["check", str(trained["run"]), "-m", "val_loss", "--chosen", str(evil)])
    assert result.exit_code == 2 and "weights_only" in result.stderr and not marker.exists()


def test_keras_file_is_identified_by_its_weights(tmp_path):
    pytest.importorskip("h5py")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    (xtr, ytr), (xva, yva) = _data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    rec = Recorder(tmp_path / "run", task="binary", output="logit")
    for epoch in range(1, 4):
        model.fit(xtr, ytr, epochs=1, batch_size=50, verbose=0)
        folder = rec.save(epoch, None, val_target=yva, val_output=model.predict(xva, verbose=0)[:, 0])
        model.save(folder / "model.keras")
        if epoch == 2:
            time.sleep(1.1)  # .keras stores the time of saving (to the second): other bytes
            model.save(tmp_path / "best.keras")
            model.save_weights(tmp_path / "best.weights.h5")  # the weights alone, as HDF5
    recorded = tmp_path / "run" / "checkpoints" / "epoch-0002" / "model.keras"
    for shipped in (tmp_path / "best.keras", tmp_path / "best.weights.h5"):
        assert sha256_file(shipped) != sha256_file(recorded)
        _, doc = gate(tmp_path / "run", "-m", "roc_auc", "--chosen", shipped)
        assert doc["chosen"] == "epoch-0002" and doc["chosen_how"] == "tensor content matches epoch-0002/model.keras"


def test_keras_without_h5py_is_a_clear_error(trained, tmp_path, monkeypatch):
    import zipfile

    shipped = tmp_path / "best.keras"
    with zipfile.ZipFile(shipped, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "h5py", None)
    result = runner.invoke(app, ["check", str(trained["run"]), "-m", "val_loss", "--chosen", str(shipped)])
    assert result.exit_code == 2 and "needs h5py" in result.stderr


# ---------------------------------------------------------------- identical weights


def test_identical_weights_are_ambiguous_and_judged_by_the_documented_policy(tmp_path):
    trained = train(tmp_path, epochs=8, keep_best_so_far=True, lr=1.0)
    run = trained["run"]
    hashes = {p.parent.name: sha256_file(p) for p in sorted(run.glob("checkpoints/*/model.pt"))}
    same = sorted(name for name, digest in hashes.items() if digest == hashes[trained["best"]])
    assert len(same) > 1, "training should have stopped improving, so best-so-far repeats"
    code, doc = gate(run, "-m", "val_loss", "--chosen", run.parent / "best_model.pth")
    assert doc["matches"] == same and "ambiguous" in doc["chosen_how"]
    # equal values: the earliest is judged, unless run.json 'chosen' is one of them
    assert doc["chosen"] == same[0] and f"judged {same[0]}" in doc["chosen_how"]
    raw = json.loads((run / "run.json").read_text())
    raw["chosen"] = same[-1]
    (run / "run.json").write_text(json.dumps(raw))
    _, doc = gate(run, "-m", "val_loss", "--chosen", run.parent / "best_model.pth")
    assert doc["chosen"] == same[-1]
    # values that differ (a non-deterministic evaluation): the worst of them is judged
    meta = run / "checkpoints" / same[1] / "meta.json"
    data = json.loads(meta.read_text())
    data["logged"]["val_loss"] += 1.0
    meta.write_text(json.dumps(data))
    code, doc = gate(run, "-m", "val_loss", "--chosen", run.parent / "best_model.pth")
    assert doc["chosen"] == same[1] and code == 1


# ---------------------------------------------------------------- links, FIFOs, devices


def _cli(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ckptaudit", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_links_out_of_the_run_and_special_files_are_never_read(trained, tmp_path):
    import shutil

    run = shutil.copytree(trained["run"], tmp_path / "run", symlinks=True)
    ckpt = run / "checkpoints" / "epoch-0002"
    outside = tmp_path / "outside.pt"
    outside.write_bytes(b"a file outside the run")
    os.symlink("/dev/zero", ckpt / "extra.pt")
    os.symlink(outside, ckpt / "outside.pt")
    os.mkfifo(ckpt / "pipe.pt")
    os.symlink("../epoch-0001/model.pt", ckpt / "sibling.pt")  # inside the run: followed
    assert sorted(weight_hashes(ckpt)) == ["model.pt", "sibling.pt"]
    # the gate finishes (no endless /dev/zero, no blocking FIFO) and still identifies
    done = _cli(
        "check",
        run,
        "-m",
        "val_loss",
        "--chosen",
        trained["run"].parent / "best_model.pth",
        "--format",
        "json",
        "--resamples",
        "200",
    )
    assert done.returncode in (0, 1), done.stderr
    assert json.loads(done.stdout)["chosen"] == trained["best"]
    # pick records only hashes of files inside the run
    placed = _cli("pick", run, "-m", "val_loss", "--link", tmp_path / "export" / "best", "--resamples", "200")
    assert placed.returncode == 0, placed.stderr
    files = json.loads((tmp_path / "export" / "best.ckptaudit.json").read_text())["files"]
    assert "extra.pt" not in files and "outside.pt" not in files and "pipe.pt" not in files


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_chosen_fifo_or_device_is_refused_not_read(trained, tmp_path, kind):
    if kind == "fifo":
        chosen = tmp_path / "best.pth"
        os.mkfifo(chosen)
    else:
        chosen = Path("/dev/zero")
    done = _cli("check", trained["run"], "-m", "val_loss", "--chosen", chosen, timeout=60)
    assert done.returncode == 2 and "not a regular file" in done.stderr


def test_a_fifo_named_like_a_provenance_file_is_refused(trained, tmp_path):
    chosen = tmp_path / "best.ckptaudit.json"
    os.mkfifo(chosen)
    done = _cli("check", trained["run"], "-m", "val_loss", "--chosen", chosen, timeout=60)
    assert done.returncode == 2 and "not a regular file" in done.stderr


# ---------------------------------------------------------------- the gate without torch


def test_torch_files_are_read_as_data_matching_torch_for_every_dtype_and_layout(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "f32": torch.randn(3, 4),
        "f16": torch.randn(5).half(),
        "bf16": torch.randn(2, 3).bfloat16(),
        "f64": torch.randn(2).double(),
        "i8": torch.tensor([-3, 4], dtype=torch.int8),
        "u8": torch.tensor([250, 1], dtype=torch.uint8),
        "i64": torch.tensor(7),  # 0-d, like BatchNorm's num_batches_tracked
        "bool": torch.tensor([True, False, True]),
        "c64": torch.randn(2, dtype=torch.complex64),
        "empty": torch.zeros(0, 3),
        "transposed": base.t(),  # a non-contiguous view
        "slice": base[1:3, 2:],  # shares its storage, with an offset
        "whole": base,
    }
    path = tmp_path / "mixed.pth"
    torch.save(state, path)
    from ckptaudit.store.tensorfiles import _zip_torch_file

    assert _zip_torch_file(path) is not None  # read as data, not by torch
    assert tensor_fingerprint(path) == fingerprint_state(state)
    legacy = tmp_path / "legacy.pth"  # the pre-zip format is read by torch (weights_only=True)
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    assert tensor_fingerprint(legacy) == fingerprint_state(state)
    changed = dict(state, slice=base[1:3, 1:5])
    assert fingerprint_state(changed) != fingerprint_state(state)


def test_the_gate_identifies_resaved_weights_without_torch(trained, tmp_path, monkeypatch):
    import shutil

    run = shutil.copytree(trained["run"], tmp_path / "run")
    for meta in run.glob("checkpoints/*/meta.json"):  # nothing recorded: every file is read
        data = json.loads(meta.read_text())
        del data["weights"]
        meta.write_text(json.dumps(data))
    legacy = tmp_path / "legacy.pth"
    torch.save(trained["best_state"], legacy, _use_new_zipfile_serialization=False)
    monkeypatch.setitem(sys.modules, "torch", None)  # as in a CI job that installed no torch
    _, doc = gate(run, "-m", "val_loss", "--chosen", trained["run"].parent / "best_model.pth")
    assert doc["chosen"] == trained["best"] and doc["chosen_how"].startswith("tensor content matches")
    result = runner.invoke(app, ["check", str(run), "-m", "val_loss", "--chosen", str(legacy)])
    assert result.exit_code == 2 and "needs torch" in result.stderr


# ---------------------------------------------------------------- what the gate must not pass unchecked (issue 18)


def _refused(*args) -> str:
    result = runner.invoke(app, ["check", *map(str, args), "--resamples", "200"])
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    return lines[0]


@pytest.mark.parametrize("files", ["empty", "removed"])
def test_a_provenance_without_hashes_vouches_for_no_placed_model(trained, tmp_path, files):
    """pick writes ``"files": {}`` when the weights lie outside the run; then, or with the key
    gone, any model placed beside the provenance used to pass."""
    import shutil

    run = shutil.copytree(trained["run"], tmp_path / "run")
    placed = runner.invoke(
        app, ["pick", str(run), "-m", "val_loss", "--copy", str(tmp_path / "export" / "best"), "--resamples", "200"]
    )
    assert placed.exit_code == 0, placed.output
    prov = tmp_path / "export" / "best.ckptaudit.json"
    assert gate(run, "-m", "val_loss", "--chosen", prov)[1]["chosen"] == trained["best"]  # as written: verified
    # another model placed there, and the provenance's hashes gone
    other = next(p for p in sorted(run.glob("checkpoints/*/model.pt")) if p.parent.name != trained["best"])
    shutil.copy(other, tmp_path / "export" / "best" / "model.pt")
    data = json.loads(prov.read_text())
    if files == "empty":
        data["files"] = {}
    else:
        del data["files"]
    prov.write_text(json.dumps(data))
    line = _refused(run, "-m", "val_loss", "--chosen", prov)
    assert "provenance" in line and ("lists no weights files" in line or "no 'files'" in line)


def test_a_folder_with_an_unreadable_weights_file_of_another_model_is_refused(trained, tmp_path):
    save_file = pytest.importorskip("safetensors.torch").save_file
    folder = tmp_path / "export"
    folder.mkdir()
    save_file(trained["best_state"], str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"hidden": 8}')
    assert gate(trained["run"], "-m", "val_loss", "--chosen", folder)[1]["chosen"] == trained["best"]
    (folder / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch" + np.random.default_rng(1).bytes(2000))
    line = _refused(trained["run"], "-m", "val_loss", "--chosen", folder)
    assert "model.onnx" in line and "cannot read" in line


def test_an_unreadable_weights_file_passes_only_when_the_checkpoint_holds_its_bytes(trained, tmp_path):
    import shutil

    save_file = pytest.importorskip("safetensors.torch").save_file
    run = shutil.copytree(trained["run"], tmp_path / "run")
    onnx = np.random.default_rng(2).bytes(2000)
    (run / "checkpoints" / trained["best"] / "model.onnx").write_bytes(onnx)
    folder = tmp_path / "export"
    folder.mkdir()
    save_file(trained["best_state"], str(folder / "model.safetensors"))
    (folder / "model.onnx").write_bytes(onnx)
    _, doc = gate(run, "-m", "val_loss", "--chosen", folder)
    assert doc["chosen"] == trained["best"] and doc["chosen_how"].startswith("folder tensor content matches")


def test_a_checkpoint_dict_holding_two_models_is_refused(trained, tmp_path):
    other = train(tmp_path, epochs=1, seed=1)["best_state"]
    shipped = tmp_path / "two.ckpt"
    torch.save({"model_state_dict": trained["best_state"], "state_dict": other, "epoch": 3}, shipped)
    line = _refused(trained["run"], "-m", "val_loss", "--chosen", shipped)
    assert "different models" in line and "'state_dict'" in line
    same = tmp_path / "same.ckpt"  # the same model under both keys is one model
    torch.save({"model_state_dict": trained["best_state"], "state_dict": copy.deepcopy(trained["best_state"])}, same)
    assert gate(trained["run"], "-m", "val_loss", "--chosen", same)[1]["chosen"] == trained["best"]


@pytest.mark.parametrize("how", ["null", "missing"])
def test_a_logged_policy_metric_stored_as_null_fails_like_a_missing_one(trained, tmp_path, how):
    import shutil

    run = shutil.copytree(trained["run"], tmp_path / "run")
    code, doc = gate(run, "-m", "val_loss", "--chosen", trained["best"])
    assert code == 0, doc
    other = next(p for p in sorted(run.glob("checkpoints/*/meta.json")) if p.parent.name != trained["best"])
    meta = json.loads(other.read_text())
    if how == "null":
        meta["logged"]["val_loss"] = None
    else:
        del meta["logged"]["val_loss"]
    other.write_text(json.dumps(meta))
    code, doc = gate(run, "-m", "val_loss", "--chosen", trained["best"])
    assert code == 1, doc
    best_rule = next(r for r in doc["rules"] if not r["passed"])
    assert other.parent.name in best_rule["message"] and "no val_loss value" in best_rule["message"]


def test_safetensors_with_stray_bytes_is_refused_as_safetensors_refuses_it(trained, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    shipped = tmp_path / "model.safetensors"
    safetensors.save_file(trained["best_state"], str(shipped))
    assert gate(trained["run"], "-m", "val_loss", "--chosen", shipped)[1]["chosen"] == trained["best"]
    with open(shipped, "ab") as fh:
        fh.write(b"\0" * 64)
    with pytest.raises(Exception, match="(?i)incomplete|buffer|invalid"):
        safetensors.load_file(str(shipped))  # the library's own verdict on the file
    line = _refused(trained["run"], "-m", "val_loss", "--chosen", shipped)
    assert "stray or missing bytes" in line
