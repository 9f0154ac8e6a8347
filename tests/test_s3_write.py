"""The Recorder and the Lightning callback writing runs to object storage (a real moto server):
the same files as on disk, meta.json last, kill -9 mid-upload invisible and cleaned, faults."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from s3server import make_bucket, patched_environ, start_fault_proxy
from s3write_checks import assert_committed_whole, child_env, ckptaudit_cmd, client, etags, run_and_kill

s3fs = pytest.importorskip("s3fs")
torch = pytest.importorskip("torch")

from ckptaudit.errors import UsageError  # noqa: E402
from ckptaudit.store.reader import read_predictions, read_run  # noqa: E402
from ckptaudit.store.recorder import Recorder  # noqa: E402

RNG = np.random.default_rng(7)
Y = RNG.integers(0, 2, 64)
OUTPUTS = RNG.normal(size=(6, 64))
MODEL = torch.nn.Linear(4, 1)


@pytest.fixture(autouse=True)
def _fresh_s3_clients():
    """fsspec caches one S3FileSystem per set of options, not per environment: each test (and
    each server a test points AWS_ENDPOINT_URL at) needs a client made from the current one."""
    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


def _record(path, epochs=range(3), **options):
    rec = Recorder(path, task="binary", output="logit", live_audit=False, **options)
    for e in epochs:
        rec.save(e, MODEL, val_target=Y, val_output=OUTPUTS[e], logged={"val_loss": float(e % 2)})
    return rec


def _download(endpoint: str, bucket: str, prefix: str, dest: Path) -> Path:
    c = client(endpoint)
    for key in etags(endpoint, bucket, prefix + "/"):
        target = dest / key[len(prefix) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(c.get_object(Bucket=bucket, Key=key)["Body"].read())
    return dest


def test_recorder_writes_the_same_run_as_on_disk_and_resumes(s3_env, tmp_path):
    bucket = make_bucket(s3_env)
    url = f"s3://{bucket}/runs/exp1"
    rec = _record(url)
    assert rec.url == url and Recorder.existing_run(url, resume=True) is not None
    rec.choose(1)
    local = _record(tmp_path / "local")
    local.choose(1)
    copy = _download(s3_env, bucket, "runs/exp1", tmp_path / "copy")
    files = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(local.path).as_posix() for p in local.path.rglob("*") if p.is_file())
    for name in files:  # predictions, meta.json (with the weights' sha256) and run.json byte for byte
        if not name.endswith(".pt"):
            assert (copy / name).read_bytes() == (local.path / name).read_bytes(), name
    r = read_run(copy)
    assert r.chosen == "epoch-0001" and [c.epoch for c in r.checkpoints] == [0, 1, 2]
    np.testing.assert_array_equal(read_predictions(r, r.checkpoints[2]).output, OUTPUTS[2])
    with pytest.raises(UsageError, match=r"^s3://.*already holds 3 checkpoint"):
        Recorder(url, task="binary", output="logit")
    with pytest.raises(UsageError, match=r"^s3://.*epoch-0002: checkpoint already exists"):
        _record(url, epochs=[2], resume=True)
    resumed = _record(url, epochs=[3], resume=True)
    assert resumed.run["chosen"] == "epoch-0001"  # another session's chosen is kept
    assert assert_committed_whole(s3_env, bucket, "runs/exp1") == (["epoch-0000", "epoch-0001", "epoch-0002", "epoch-0003"], [])
    # the validation-set guard reads the first checkpoint back from the bucket
    with pytest.raises(Exception, match="validation"):
        Recorder(url, task="binary", output="logit", resume=True, live_audit=False).save(4, val_target=1 - Y, val_output=Y)
    fresh = _record(url, epochs=[0], fresh=True)
    assert [c.name for c in read_run(fresh.path).checkpoints] == ["epoch-0000"]
    keys = etags(s3_env, bucket, "runs/exp1/")
    assert sum(k.startswith("runs/exp1/.replaced-") and k.endswith("/meta.json") for k in keys) == 4  # moved aside, kept


CHILD = textwrap.dedent(
    """
    import sys, numpy as np, torch
    from ckptaudit.store.recorder import Recorder
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 64)
    rec = Recorder(sys.argv[1], task="binary", output="logit", live_audit=False, resume=True)
    model = torch.nn.Linear(4, 1)
    def extra(folder):  # a framework's own files: more objects, a wider window for the kill
        for i in range(4):
            (folder / f"shard-{i}.bin").write_bytes(bytes(2000 + i))
    print("ready", flush=True)
    for e in range(rec.next_epoch, rec.next_epoch + 50):
        rec.save(e, model, val_target=y, val_output=rng.normal(size=64), write=extra)
    """
)


def test_kill_during_recorder_upload_is_invisible_and_the_next_recorder_cleans_it(s3_server, tmp_path):
    bucket = make_bucket(s3_server.endpoint)
    url = f"s3://{bucket}/runs/killed"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    slow = start_fault_proxy(s3_server.endpoint, latency=0.08)  # each save takes ~10 requests
    rng = random.Random(25)
    uncommitted_seen = 0
    try:
        for kill in range(2):
            code = run_and_kill([sys.executable, str(script), url], child_env(slow.endpoint), after=rng.uniform(0.3, 2.5))
            assert code == -9
            committed, uncommitted = assert_committed_whole(s3_server.endpoint, bucket, "runs/killed")
            uncommitted_seen += bool(uncommitted)
            with patched_environ(s3_server.env()):
                s3fs.S3FileSystem.clear_instance_cache()
                r = Recorder.existing_run(url, resume=True)
                assert [c.name for c in r.checkpoints] == committed  # readers see the committed only
            if kill == 0:  # the next prune removes a crashed write's objects too (once older than the grace period)
                out = subprocess.run(
                    ckptaudit_cmd("prune", url, "--metric", "auroc", "--yes"),
                    env=child_env(s3_server.endpoint, CKPTAUDIT_REMOTE_GRACE_S="0"),
                    capture_output=True,
                    text=True,
                )
                assert out.returncode == 0, out.stderr
                assert assert_committed_whole(s3_server.endpoint, bucket, "runs/killed") == (committed, [])
    finally:
        slow.stop()
    assert uncommitted_seen  # at least one kill landed mid-upload
    with patched_environ(s3_server.env()):
        s3fs.S3FileSystem.clear_instance_cache()
        rec = Recorder(url, task="binary", output="logit", resume=True, live_audit=False)  # cleans the leftovers
        y = np.random.default_rng(0).integers(0, 2, 64)  # the child's validation rows
        rec.save(rec.next_epoch, MODEL, val_target=y, val_output=OUTPUTS[0][: len(y)])
    committed, uncommitted = assert_committed_whole(s3_server.endpoint, bucket, "runs/killed")
    assert uncommitted == [] and len(committed) >= 2


def test_recorder_through_a_faulty_server(s3_server):
    bucket = make_bucket(s3_server.endpoint)
    flaky = start_fault_proxy(s3_server.endpoint, fail_every=5)
    try:
        with patched_environ(flaky.env()):
            s3fs.S3FileSystem.clear_instance_cache()
            _record(f"s3://{bucket}/runs/flaky", epochs=range(4)).choose(2)
    finally:
        flaky.stop()
    committed, uncommitted = assert_committed_whole(s3_server.endpoint, bucket, "runs/flaky")
    assert committed == [f"epoch-{e:04d}" for e in range(4)] and uncommitted == []
    dead = start_fault_proxy(s3_server.endpoint, fail_every=1)
    try:
        s3fs.S3FileSystem.clear_instance_cache()
        # retries are bounded by the settings reads use too (store.remote.S3_CONFIG_DEFAULTS: botocore's
        # standard mode, 3 attempts, timeouts; s3fs's own loop capped): no AWS_MAX_ATTEMPTS needed (~12 s)
        with patched_environ(dead.env()), pytest.raises(UsageError) as err:
            _record(f"s3://{bucket}/runs/dead", epochs=range(1))
    finally:
        dead.stop()
    assert len(str(err.value).splitlines()) == 1 and str(err.value).startswith(f"s3://{bucket}/runs/dead")
    assert etags(s3_server.endpoint, bucket, "runs/dead/") == {}


def test_lightning_callback_trains_into_a_bucket(s3_env, tmp_path):
    pytest.importorskip("lightning")
    import lightning.pytorch as L
    from torch.utils.data import DataLoader, TensorDataset

    from ckptaudit.integrations.lightning import CkptauditCallback

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 1)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            return torch.nn.functional.binary_cross_entropy_with_logits(self(batch[0])[:, 0], batch[1])

        def validation_step(self, batch, _):
            logits = self(batch[0])[:, 0]
            self.log("val_loss", torch.nn.functional.binary_cross_entropy_with_logits(logits, batch[1]))
            self.log("val_acc", ((logits > 0).float() == batch[1]).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    L.seed_everything(0, verbose=False)
    x = torch.randn(96, 4)
    y = (x[:, 0] > 0).float()
    data = DataLoader(TensorDataset(x, y), batch_size=32)
    bucket = make_bucket(s3_env)
    url = f"s3://{bucket}/runs/lightning"
    mc = L.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_acc", mode="max", save_top_k=1)
    cb = CkptauditCallback(url, task="binary", output="logit")
    trainer = L.Trainer(
        max_epochs=3, accelerator="cpu", callbacks=[mc, cb], logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(Net(), data, data)
    committed, uncommitted = assert_committed_whole(s3_env, bucket, "runs/lightning")
    assert committed == ["epoch-0000", "epoch-0001", "epoch-0002"] and uncommitted == []
    r = read_run(_download(s3_env, bucket, "runs/lightning", tmp_path / "copy"))
    assert r.selected_by.metric == "val_acc" and r.chosen in committed
    assert all((c.path / "model.ckpt").is_file() for c in r.checkpoints)
    with pytest.raises(UsageError, match="already holds 3"):
        CkptauditCallback(url, task="binary", output="logit")


def test_a_memory_url_run_is_recorded_and_pruned_in_process():
    import fsspec

    from ckptaudit.pruning import prune

    url = "memory://ckptaudit-test/runs/mem"
    fs = fsspec.filesystem("memory")
    if fs.exists("/ckptaudit-test"):
        fs.rm("/ckptaudit-test", recursive=True)
    fs.pipe("/ckptaudit-test/runs/mem-b/run.json", b"{}")  # a sibling prefix
    _record(url, epochs=range(5)).choose(1)
    before = {p: fs.cat(p) for p in fs.find("/ckptaudit-test")}
    p = prune([url], ["val_loss"], keep=1, keep_last=1, yes=True)[0]
    assert sorted(p.deleted) == ["epoch-0002", "epoch-0003"]  # kept: top-1 val_loss (0), chosen (1), last (4)
    after = {p: fs.cat(p) for p in fs.find("/ckptaudit-test")}
    gone = {k for k in before if k not in after}
    assert gone == {f"/ckptaudit-test/runs/mem/checkpoints/epoch-000{e}/model.pt" for e in (2, 3)}
    assert {k for k in after if before.get(k) != after[k]} == {"/ckptaudit-test/runs/mem/ckptaudit-pruned.json"}
    fs.rm("/ckptaudit-test", recursive=True)
