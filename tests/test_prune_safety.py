"""`prune` loses nothing under the runs people really have (issue 8, section 1).

Every case is checked against a deletion oracle: the tree is hashed before, the prune runs,
and the tree after must be exactly the tree before minus the checkpoints the plan doomed
(plus the journal), each kept checkpoint byte-identical. Crashes, kills, SIGINT, concurrent
prunes and lock takeovers use real subprocesses; mount points, a full disk and a read-only
run use real tmpfs mounts where this machine allows mounting (root), else they are skipped
(a simulated-st_dev test of the device check always runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ckptaudit
from ckptaudit.cli import app
from ckptaudit.pruning import LOCK_FILE, LOG_FILE, TRASH_DIR
from ckptaudit.store.pins import PINS_FILE, read_pins
from ckptaudit.store.pruned import PRUNED_FILE
from ckptaudit.store.prunefs import CrossDeviceError, remove_tree

runner = CliRunner()
TRASH = f"checkpoints/{TRASH_DIR}"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def digest(root: Path) -> dict[str, str]:
    """Every entry under root (links never followed) with a hash of its content or link target."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def sub(tree: dict[str, str], prefix: str) -> dict[str, str]:
    return {k[len(prefix) + 1 :]: v for k, v in tree.items() if k.startswith(prefix + "/")}


#: what prune's default keeps of a doomed checkpoint (its weights go)
KEPT_OF_DOOMED = ("meta.json", "val.npz", "train.npz")


def without(tree: dict[str, str], names: set[str], mode: str = "all") -> dict[str, str]:
    """The tree minus checkpoints/NAME (and below) for each name, and minus the journal and
    the pruned record; in the default mode ("weights") each doomed folder keeps its
    meta.json and predictions."""
    gone = {f"checkpoints/{n}" for n in names}
    kept = {f"{g}/{f}" for g in gone for f in KEPT_OF_DOOMED} | gone if mode == "weights" else set()
    return {
        k: v
        for k, v in tree.items()
        if k not in (LOG_FILE, PRUNED_FILE) and (k in kept or (k not in gone and not any(k.startswith(g + "/") for g in gone)))
    }


def prune_json(*args) -> list[dict]:
    result = invoke("prune", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def doomed(plan: dict) -> set[str]:
    return {e["checkpoint"] for e in plan["entries"] if e["action"] == "delete"}


def assert_oracle(run: Path, before: dict[str, str], plan: dict, trash_root: Path | None = None) -> None:
    """After a prune: exactly the plan's doomed checkpoints are gone, everything else is
    byte-identical; with a trash folder each doomed checkpoint is there, whole."""
    after = {k: v for k, v in digest(run).items() if k not in (LOG_FILE, PRUNED_FILE)}
    mode = plan.get("mode", "all")
    assert after == without(before, doomed(plan), mode)
    for name in doomed(plan):
        if trash_root is not None:
            moved = sub(before, f"checkpoints/{name}")
            if mode == "weights":
                moved = {k: v for k, v in moved.items() if k not in KEPT_OF_DOOMED}
            assert digest(trash_root / name) == moved


def comparable(plan: dict) -> dict:
    return {k: v for k, v in plan.items() if k not in ("dry_run", "deleted")}


def _default_sigint() -> None:
    # NOTE: a shell that runs the suite in the background (a CI script, `nohup ... &`) starts
    # it with SIGINT ignored, which children inherit; Ctrl-C is tested as a terminal sends it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(run: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ckptaudit", "prune", str(run), *args]
    return subprocess.Popen(
        cmd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a real tmpfs (root only); skips the test where mounting is not permitted."""
    mounted: list[Path] = []

    def mount(path: Path, size: str = "4m", ro: bool = False) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if shutil.which("mount") is None or os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root and mount(8)")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"mounting is not permitted here: {result.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True)


# ------------------------------------------------------------------ one plan, executed


@pytest.mark.parametrize(
    "options",
    [
        ("-m", "recall", "--keep", "2"),
        ("-m", "val_loss", "-m", "roc_auc", "--keep", "1", "--keep-last", "0", "--keep-every", "5"),
    ],
)
def test_yes_carries_out_exactly_the_dry_run_plan(copy_run, options):
    run = copy_run("fraud")
    before = digest(run)
    dry = prune_json(run, *options)[0]
    assert digest(run) == before
    done = prune_json(run, *options, "--yes")[0]
    assert comparable(done) == comparable(dry) and not done["dry_run"]
    assert set(done["deleted"]) == doomed(dry) and doomed(dry)
    assert_oracle(run, before, dry)


def test_dry_run_flag_is_the_default_spelled_out(copy_run):
    run = copy_run("fraud")
    before = digest(run)
    default = invoke("prune", run, "-m", "recall")
    explicit = invoke("prune", run, "-m", "recall", "--dry-run")
    assert explicit.exit_code == 0 and explicit.stdout == default.stdout
    assert "dry run: nothing was deleted" in explicit.stdout
    both = invoke("prune", run, "-m", "recall", "--dry-run", "--yes")
    assert both.exit_code == 2 and "--dry-run contradicts --yes" in both.stderr
    assert digest(run) == before


def test_a_checkpoint_path_prunes_that_checkpoint_only(copy_run, monkeypatch):
    run = copy_run("fraud")
    before = digest(run)
    target = run / "checkpoints" / "epoch-0005"
    dry = prune_json(target, "-m", "recall", "--keep", "1")[0]
    # the rules rank the whole run (epoch-0009 is its top-1 by recall), only epoch-0005 is a candidate
    assert [(e["checkpoint"], e["action"]) for e in dry["entries"]] == [("epoch-0005", "delete")]
    assert dry["scope"] == ["epoch-0005"]
    done = prune_json(target, "-m", "recall", "--keep", "1", "--yes")[0]
    assert comparable(done) == comparable(dry) and done["deleted"] == ["epoch-0005"]
    assert_oracle(run, before, dry)
    # a checkpoint a rule keeps is kept, and nothing else is touched
    before = digest(run)
    kept = prune_json(run / "checkpoints" / "epoch-0009", "-m", "recall", "--keep", "1", "--yes")[0]
    assert [(e["checkpoint"], e["action"], e["kept_by"]) for e in kept["entries"]] == [("epoch-0009", "keep", ["top-1 recall"])]
    assert {k: v for k, v in digest(run).items() if k != LOG_FILE} == {k: v for k, v in before.items() if k != LOG_FILE}
    # `prune .` inside a checkpoint folder means that checkpoint too
    monkeypatch.chdir(run / "checkpoints" / "epoch-0006")
    before = digest(run)
    dry = prune_json(".", "-m", "recall", "--keep", "1")[0]
    assert [e["checkpoint"] for e in dry["entries"]] == ["epoch-0006"] and doomed(dry) == {"epoch-0006"}
    monkeypatch.chdir(run)
    prune_json(run / "checkpoints" / "epoch-0006", "-m", "recall", "--keep", "1", "--yes")
    assert_oracle(run, before, dry)


# ------------------------------------------------------------------ aliases


def test_aliases_are_never_checkpoints_and_keep_their_targets(copy_run, tmp_path):
    run = copy_run("fraud")
    ckpts = run / "checkpoints"
    os.symlink("epoch-0005", ckpts / "best")
    os.symlink("epoch-0020", ckpts / "latest")
    os.symlink("best", ckpts / "previous-best")  # a chain: still epoch-0005
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "meta.json").write_text('{"epoch": 99, "logged": {"val_loss": 0.0}}')
    os.symlink(tmp_path / "elsewhere", ckpts / "outside")  # never followed
    os.symlink("checkpoints/epoch-0007", run / "exported")  # a link elsewhere in the run
    (ckpts / "epoch-0010" / "model.pt").unlink()
    os.symlink("../epoch-0003/model.pt", ckpts / "epoch-0010" / "model.pt")  # deduplicated weights
    ranked = json.loads(invoke("rank", run, "-m", "val_loss", "--format", "json").stdout)
    assert sorted(r["checkpoint"] for r in ranked) == sorted(p.name for p in ckpts.iterdir() if not p.is_symlink())
    before = digest(run)
    options = ("-m", "val_loss", "--keep", "1", "--keep-last", "0")
    dry = prune_json(run, *options)[0]
    rows = {e["checkpoint"]: e for e in dry["entries"]}
    assert "aliased:best" in rows["epoch-0005"]["kept_by"] and "aliased:previous-best" in rows["epoch-0005"]["kept_by"]
    assert "aliased:latest" in rows["epoch-0020"]["kept_by"]
    assert "aliased:exported" in rows["epoch-0007"]["kept_by"]
    assert "aliased:checkpoints/epoch-0010/model.pt" in rows["epoch-0003"]["kept_by"]
    assert {n: rows[n]["action"] for n in ("best", "latest", "previous-best", "outside")} == dict.fromkeys(
        ("best", "latest", "previous-best", "outside"), "alias"
    )
    assert "never followed" in rows["outside"]["note"] and rows["best"]["note"] == "alias of epoch-0005"
    text = invoke("prune", run, *options).stdout
    assert "aliased:best" in text and "alias (untouched)" in text
    done = prune_json(run, *options, "--yes")[0]
    assert comparable(done) == comparable(dry)
    assert_oracle(run, before, dry)
    for alias in ("best", "latest", "previous-best", "exported"):
        assert (run / alias if alias == "exported" else ckpts / alias).resolve().is_dir()
    assert (ckpts / "epoch-0003" / "model.pt").is_file()  # the target of a link from a doomed checkpoint
    assert (tmp_path / "elsewhere" / "meta.json").is_file()


def test_an_alias_name_names_its_target(copy_run):
    run = copy_run("fraud")
    os.symlink("epoch-0009", run / "checkpoints" / "best")
    result = invoke("check", run, "-m", "recall", "--chosen", "best", "--resamples", "200", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chosen"] == "epoch-0009"
    data = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**data, "chosen": "best"}))
    rows = {e["checkpoint"]: e for e in prune_json(run, "-m", "val_loss", "--keep", "1")[0]["entries"]}
    assert "chosen" in rows["epoch-0009"]["kept_by"] and "aliased:best" in rows["epoch-0009"]["kept_by"]


# ------------------------------------------------------------------ unscorable with a logged metric


def test_a_logged_metric_keeps_checkpoints_without_a_readable_val_npz(copy_run):
    run = copy_run("fraud")
    (run / "checkpoints" / "epoch-0004" / "val.npz").unlink()
    (run / "checkpoints" / "epoch-0006" / "val.npz").write_bytes(b"PK\x03\x04 truncated")
    before = digest(run)
    options = ("-m", "val_loss", "--keep", "1", "--keep-last", "0")
    dry = prune_json(run, *options)[0]
    rows = {e["checkpoint"]: e for e in dry["entries"]}
    assert rows["epoch-0004"]["kept_by"] == ["unscorable"] and rows["epoch-0004"]["note"] == "no val.npz"
    assert rows["epoch-0006"]["kept_by"] == ["unscorable"] and "corrupt" in rows["epoch-0006"]["note"]
    result = invoke("prune", run, *options, "--yes", "--format", "json")
    assert result.exit_code == 0, result.output  # documented: kept, exit 0
    assert_oracle(run, before, dry)
    assert {"epoch-0004", "epoch-0006"} <= {p.name for p in (run / "checkpoints").iterdir()}


# ------------------------------------------------------------------ pins


@pytest.mark.parametrize("how", ["--link", "--copy"])
def test_an_exported_pick_is_pinned_through_a_rename_until_unpinned(copy_run, tmp_path, how):
    run = copy_run("fraud")
    dest = tmp_path / "export" / "best"
    result = invoke("pick", run, "-m", "recall", how, dest, "--resamples", "200")
    assert result.exit_code == 0, result.output
    pins = read_pins(run)
    assert [(p.checkpoint, p.kind, p.dest) for p in pins] == [("epoch-0009", how[2:], str(dest))]
    moved = run.rename(tmp_path / "renamed-run")  # the pin names the checkpoint relative to the run
    before = digest(moved)
    options = ("-m", "val_loss", "--keep", "1", "--keep-last", "0")
    dry = prune_json(moved, *options)[0]
    rows = {e["checkpoint"]: e for e in dry["entries"]}
    assert rows["epoch-0009"]["action"] == "keep" and "pinned" in rows["epoch-0009"]["kept_by"]
    prune_json(moved, *options, "--yes")
    assert_oracle(moved, before, dry)
    # explicit unpin (CLI), then the next prune may delete it
    result = invoke("unpin", moved / "checkpoints" / "epoch-0009")
    assert result.exit_code == 0 and "unpinned epoch-0009" in result.stdout
    assert read_pins(moved) == []
    again = invoke("unpin", moved / "checkpoints" / "epoch-0009")
    assert again.exit_code == 2 and "no pin" in again.stderr
    before = digest(moved)
    dry = prune_json(moved, *options)[0]
    assert doomed(dry) == {"epoch-0009"}
    prune_json(moved, *options, "--yes")
    assert_oracle(moved, before, dry)


def test_unpin_library_function_and_dest_filter(copy_run, tmp_path):
    run = copy_run("fraud")
    ckptaudit.pick(run, "recall", link=tmp_path / "a", resamples=200)
    ckptaudit.pick(run, "recall", copy=tmp_path / "b", resamples=200)
    assert len(read_pins(run)) == 2
    gone = ckptaudit.unpin(run / "checkpoints" / "epoch-0009", dest=tmp_path / "a")
    assert [p.dest for p in gone] == [str(tmp_path / "a")]
    assert [p.dest for p in read_pins(run)] == [str(tmp_path / "b")]
    assert json.loads((run / PINS_FILE).read_text())["format"] == "ckptaudit-pins/1"


def test_a_provenance_file_inside_a_renamed_run_still_protects(copy_run, tmp_path):
    run = copy_run("fraud")
    (run / "exported.ckptaudit.json").write_text(json.dumps({"run": str(run), "checkpoint": "epoch-0006"}))
    moved = run.rename(tmp_path / "moved")
    dry = prune_json(moved, "-m", "recall", "--keep", "1")[0]
    assert "provenance:exported.ckptaudit.json" in {e["checkpoint"]: e for e in dry["entries"]}["epoch-0006"]["kept_by"]


# ------------------------------------------------------------------ --trash, interrupted, --resume


def test_an_interrupted_trash_prune_resumes_into_the_recorded_trash_folder(copy_run, tmp_path):
    run = copy_run("fraud")
    bin_dir = tmp_path / "bin"
    before = digest(run)
    dry = prune_json(run, "-m", "recall", "--keep", "2", "--all", "--trash", bin_dir)[0]
    assert all(e["trash"] == str(bin_dir) for e in dry["entries"] if e["action"] == "delete")
    proc = spawn(
        run, "-m", "recall", "--keep", "2", "--all", "--yes", "--trash", str(bin_dir), env={"CKPTAUDIT_TEST_CRASH_AFTER": "3"}
    )
    proc.communicate(timeout=60)
    assert proc.returncode == 99
    in_trash = sorted(p.name for p in (run / TRASH).iterdir())
    assert len(in_trash) == 1
    assert digest(run / TRASH / in_trash[0]) == sub(before, f"checkpoints/{in_trash[0]}")
    wrong = invoke("prune", run, "--resume", "--trash", tmp_path / "other")
    assert wrong.exit_code == 2 and str(bin_dir) in wrong.stderr
    # the journal is data, never an instruction: without --trash on this command line nothing
    # moves outside the run; the message names the recorded folder to check and pass
    refused = invoke("prune", run, "--resume")
    assert refused.exit_code == 2 and str(bin_dir) in refused.stderr and "--trash" in refused.stderr
    assert (run / TRASH / in_trash[0]).is_dir()
    result = invoke("prune", run, "--resume", "--trash", bin_dir)
    assert result.exit_code == 0, result.output
    assert digest(bin_dir / "fraud" / in_trash[0]) == sub(before, f"checkpoints/{in_trash[0]}")
    prune_json(run, "-m", "recall", "--keep", "2", "--all", "--yes", "--trash", bin_dir)
    assert_oracle(run, before, dry, trash_root=bin_dir / "fraud")


def test_a_trash_folder_holding_the_same_name_is_never_overwritten(copy_run, tmp_path):
    run = copy_run("fraud")
    bin_dir = tmp_path / "bin"
    (bin_dir / "fraud" / "epoch-0001").mkdir(parents=True)
    (bin_dir / "fraud" / "epoch-0001" / "older.bin").write_bytes(b"an earlier prune's epoch-0001")
    before = digest(run)
    dry = prune_json(run, "-m", "recall", "--keep", "2", "--all", "--trash", bin_dir)[0]
    prune_json(run, "-m", "recall", "--keep", "2", "--all", "--trash", bin_dir, "--yes")
    assert (bin_dir / "fraud" / "epoch-0001" / "older.bin").read_bytes() == b"an earlier prune's epoch-0001"
    assert digest(bin_dir / "fraud" / "epoch-0001.1") == sub(before, "checkpoints/epoch-0001")
    after = {k: v for k, v in digest(run).items() if k not in (LOG_FILE, PRUNED_FILE)}
    assert after == without(before, doomed(dry))


def test_a_checkpoint_name_of_250_characters_is_pruned(copy_run):
    run = copy_run("fraud")
    long_name = "epoch-0003-" + "x" * 239
    (run / "checkpoints" / "epoch-0003").rename(run / "checkpoints" / long_name)
    before = digest(run)
    proc = spawn(run, "-m", "recall", "--keep", "2", "--all", "--yes", env={"CKPTAUDIT_TEST_CRASH_AFTER": "3"})
    proc.communicate(timeout=60)
    assert proc.returncode == 99 and (run / TRASH / long_name).is_dir()
    dry = prune_json(run, "-m", "recall", "--keep", "2", "--all")[0]
    assert long_name in {e["checkpoint"] for e in dry["entries"] if e["action"] == "finish"}
    done = prune_json(run, "-m", "recall", "--keep", "2", "--all", "--yes")[0]
    assert long_name in done["deleted"]
    after = {k: v for k, v in digest(run).items() if k not in (LOG_FILE, PRUNED_FILE)}
    gone = {e["checkpoint"] for e in dry["entries"] if e["action"] in ("delete", "finish")}
    assert after == without(before, gone | {"epoch-0001", "epoch-0002"})


# ------------------------------------------------------------------ mount points


def test_a_mount_point_inside_a_doomed_checkpoint_is_never_crossed(copy_run, tmpfs):
    run = copy_run("fraud")
    mnt = tmpfs(run / "checkpoints" / "epoch-0001" / "data", "1m")
    (mnt / "precious.bin").write_bytes(b"on another device")
    before = digest(run)
    for args in ((), ("--yes",)):
        result = invoke("prune", run, "-m", "recall", "--keep", "2", *args)
        assert result.exit_code == 2 and "mount point" in result.stderr and "device boundary" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert digest(run) == before and (mnt / "precious.bin").read_bytes() == b"on another device"


def test_the_remover_stops_at_another_device_simulated_st_dev(copy_run):
    # a mount appearing after the plan: the remover compares every entry's st_dev with the
    # checkpoints folder's (here simulated by giving it another device number)
    run = copy_run("fraud")
    before = digest(run)
    fd = os.open(run / "checkpoints", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(CrossDeviceError, match="device boundary"):
            remove_tree(fd, "epoch-0001", os.fstat(fd).st_dev + 1, run / "checkpoints" / "epoch-0001")
    finally:
        os.close(fd)
    assert digest(run) == before


# ------------------------------------------------------------------ full disk, read-only run


def test_a_full_disk_stops_with_a_message_releases_the_lock_and_the_next_prune_finishes(copy_run, monkeypatch):
    import errno

    from ckptaudit.store.prunefs import ConfinedRun

    run = copy_run("fraud")
    before = digest(run)
    dry = prune_json(run, "-m", "recall", "--keep", "2")[0]
    real_journal = ConfinedRun.journal
    calls = {"n": 0}

    def full_after_three(self, record):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(run / LOG_FILE))
        real_journal(self, record)

    monkeypatch.setattr(ConfinedRun, "journal", full_after_three)
    result = invoke("prune", run, "-m", "recall", "--keep", "2", "--yes")
    assert result.exit_code == 2 and "the disk is full" in result.stderr and "--resume" in result.stderr
    assert "internal error" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (run / LOCK_FILE).exists()
    monkeypatch.setattr(ConfinedRun, "journal", real_journal)
    done = prune_json(run, "-m", "recall", "--keep", "2", "--yes")[0]
    assert not (run / LOCK_FILE).exists() and not (run / TRASH).exists()
    assert_oracle(run, before, dry)
    assert not done["dry_run"] and set(done["deleted"]) < doomed(dry)


def test_a_full_run_disk_is_a_message_and_leaves_no_lock(copy_run, tmp_path, tmpfs):
    mnt = tmpfs(tmp_path / "full", "2m")
    run = mnt / "fraud"
    shutil.copytree(copy_run("fraud"), run, symlinks=True)
    before = digest(run)
    dry = prune_json(run, "-m", "recall", "--keep", "2")[0]
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)  # fill the disk to the last byte
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    result = invoke("prune", run, "-m", "recall", "--keep", "2", "--yes")
    assert result.exit_code == 2 and "the disk is full" in result.stderr, result.output
    assert "internal error" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (run / LOCK_FILE).exists() and digest(run) == before
    (mnt / "filler").unlink()
    prune_json(run, "-m", "recall", "--keep", "2", "--yes")
    assert_oracle(run, before, dry)
    assert not (run / LOCK_FILE).exists()


def test_a_full_trash_disk_stops_cleanly_and_resume_finishes_it(copy_run, tmp_path, tmpfs):
    run = copy_run("fraud")
    bin_dir = tmpfs(tmp_path / "small-bin", "400k")  # another device, too small for 17 checkpoints
    before = digest(run)
    dry = prune_json(run, "-m", "recall", "--keep", "2", "--all", "--trash", bin_dir)[0]
    result = invoke("prune", run, "-m", "recall", "--keep", "2", "--all", "--yes", "--trash", bin_dir)
    assert result.exit_code == 2 and "the disk is full" in result.stderr and "--resume" in result.stderr
    assert not (run / LOCK_FILE).exists()
    for name in doomed(dry):  # each doomed checkpoint is whole somewhere
        whole = [p for p in (run / "checkpoints" / name, run / TRASH / name, bin_dir / "fraud" / name) if p.is_dir()]
        assert any(digest(p) == sub(before, f"checkpoints/{name}") for p in whole), name
    remount(bin_dir, "size=8m")
    result = invoke("prune", run, "--resume", "--trash", bin_dir)
    assert result.exit_code == 0, result.output
    prune_json(run, "-m", "recall", "--keep", "2", "--all", "--yes", "--trash", bin_dir)
    assert_oracle(run, before, dry, trash_root=bin_dir / "fraud")
    assert [p.name for p in (bin_dir / "fraud").iterdir() if p.name.startswith(".")] == []


def test_a_read_only_run_is_a_clear_error(copy_run, tmp_path, tmpfs):
    mnt = tmpfs(tmp_path / "ro", "4m")
    run = mnt / "fraud"
    shutil.copytree(copy_run("fraud"), run, symlinks=True)
    remount(mnt, "ro")
    before = digest(run)
    assert invoke("prune", run, "-m", "recall", "--keep", "2").exit_code == 0  # the dry run writes nothing
    result = invoke("prune", run, "-m", "recall", "--keep", "2", "--yes")
    assert result.exit_code == 2 and "not writable" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = invoke("pick", run, "-m", "recall", "--link", tmp_path / "best", "--resamples", "200")
    assert result.exit_code == 2 and "--no-pin" in result.stderr
    result = invoke("pick", run, "-m", "recall", "--link", tmp_path / "best2", "--resamples", "200", "--no-pin")
    assert result.exit_code == 0, result.output
    assert digest(run) == before


# ------------------------------------------------------------------ paths


def test_prune_never_acts_through_a_symlinked_parent_or_sweep(copy_run, tmp_path):
    run = copy_run("fraud")
    before = digest(run)
    os.symlink(run.parent, tmp_path / "sweep-link")
    for target in (tmp_path / "sweep-link" / "fraud", tmp_path / "sweep-link"):
        result = invoke("prune", target, "-m", "recall", "--keep", "2", "--yes")
        assert result.exit_code == 2 and "reached through a symbolic link" in result.stderr, result.output
    assert digest(run) == before


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_the_journal_is_never_written_through_a_link(copy_run, tmp_path, kind):
    run = copy_run("fraud")
    outside = tmp_path / "outside.jsonl"
    outside.write_text("precious\n")
    if kind == "symlink":
        os.symlink(outside, run / LOG_FILE)
    else:
        os.link(outside, run / LOG_FILE)
    before = digest(run)
    result = invoke("prune", run, "-m", "recall", "--keep", "2", "--yes")
    assert result.exit_code == 2 and "prune never writes through one" in result.stderr
    assert outside.read_text() == "precious\n" and digest(run) == before
    assert not (run / LOCK_FILE).exists()


def test_a_symlinked_lock_file_is_refused(copy_run, tmp_path):
    run = copy_run("fraud")
    os.symlink(tmp_path / "elsewhere.lock", run / LOCK_FILE)
    result = invoke("prune", run, "-m", "recall", "--keep", "2", "--yes")
    assert result.exit_code == 2 and "symbolic link" in result.stderr
    assert not (tmp_path / "elsewhere.lock").exists()


# ------------------------------------------------------------------ locks, SIGINT, kill -9


def test_n_concurrent_prunes_over_a_stale_lock_exactly_one_acts(copy_run):
    run = copy_run("fraud")
    before = digest(run)
    (run / LOCK_FILE).write_text(f"{socket.gethostname()} {dead_pid()}")  # left by a killed prune
    dry = prune_json(run, "-m", "recall", "--keep", "2")[0]
    start = time.time() + 3.0
    env = {"CKPTAUDIT_TEST_LOCK_AT": str(start), "CKPTAUDIT_TEST_PAUSE": "2"}
    procs = [spawn(run, "-m", "recall", "--keep", "2", "--yes", env=env) for _ in range(6)]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    assert time.time() > start
    assert sorted(rc for rc, _ in results) == [0, 2, 2, 2, 2, 2], results
    assert all("another prune holds this run's lock" in err for rc, err in results if rc == 2)
    journal = [json.loads(line) for line in (run / LOG_FILE).read_text().splitlines()]
    assert [r["action"] for r in journal].count("plan") == 1
    assert_oracle(run, before, dry)
    assert not (run / LOCK_FILE).exists()


@pytest.mark.parametrize("text", ["", "{host} {pid}", "{host} {pid} prune"])
def test_an_empty_or_dead_lock_file_never_blocks(copy_run, text):
    # an empty file is what a full disk left behind before; a dead pid is a killed prune
    run = copy_run("fraud")
    before = digest(run)
    dry = prune_json(run, "-m", "recall", "--keep", "2")[0]
    (run / LOCK_FILE).write_text(text.format(host=socket.gethostname(), pid=dead_pid()))
    prune_json(run, "-m", "recall", "--keep", "2", "--yes")
    assert_oracle(run, before, dry)
    assert not (run / LOCK_FILE).exists()


def test_sigint_exits_130_and_says_what_is_left_and_how_to_resume(copy_run):
    run = copy_run("fraud")
    before = digest(run)
    dry = prune_json(run, "-m", "recall", "--keep", "2")[0]
    proc = spawn(run, "-m", "recall", "--keep", "2", "--yes", env={"CKPTAUDIT_TEST_STEP_DELAY": "0.05"})
    deadline = time.time() + 30
    while time.time() < deadline:
        log = run / LOG_FILE
        if log.exists() and '"deleted"' in log.read_text():
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err and "not yet touched (whole)" in err
    assert len(err.strip().splitlines()) == 1 and not (run / LOCK_FILE).exists()
    result = invoke("prune", run, "--resume")
    assert result.exit_code == 0, result.output
    prune_json(run, "-m", "recall", "--keep", "2", "--yes")
    assert_oracle(run, before, dry)


def _kill_trials(copy_run, trash_dirs: list[Path | None], seed: int, max_delay: float) -> int:
    """Start one prune --yes per trash choice, SIGKILL each at a random moment after it took
    the lock, check that nothing kept or doomed is lost, let the next prune finish; returns
    how many were really killed."""
    rng = random.Random(seed)
    trials = []
    for i, trash in enumerate(trash_dirs):
        run = copy_run("fraud", f"run-{seed}-{i}")
        args = ["-m", "recall", "--keep", "2", "--all", "--yes"] + (["--trash", str(trash)] if trash else [])
        if i == 0:  # every run is the same copy: one plan and one digest serve all
            dry, before = prune_json(run, "-m", "recall", "--keep", "2", "--all")[0], digest(run)
        trials.append((run, trash, args, dry, before, rng.uniform(0.0, max_delay)))
    procs = [spawn(run, *args, env={"CKPTAUDIT_TEST_STEP_DELAY": "0.01"}) for run, _, args, *_ in trials]
    started: dict[int, float] = {}
    deadline = time.time() + 60
    while time.time() < deadline and any(p.poll() is None for p in procs):
        for i, proc in enumerate(procs):
            if proc.poll() is not None:
                continue
            if i not in started and (trials[i][0] / LOCK_FILE).exists():
                started[i] = time.time()
            if i in started and time.time() >= started[i] + trials[i][5]:
                proc.send_signal(signal.SIGKILL)
        time.sleep(0.005)
    killed = 0
    for proc, (run, trash, args, dry, before, _) in zip(procs, trials, strict=True):
        proc.communicate(timeout=60)
        killed += proc.returncode == -signal.SIGKILL
        # every checkpoint is whole in place, or on its way out: in the run's trash folder
        # (whole when moving to --trash), or already whole in --trash
        for e in dry["entries"]:
            name = e["checkpoint"]
            original = sub(before, f"checkpoints/{name}")
            if e["action"] == "keep":
                assert digest(run / "checkpoints" / name) == original
                continue
            places = [run / "checkpoints" / name, run / TRASH / name] + ([trash / run.name / name] if trash else [])
            present = [p for p in places if p.is_dir()]
            if trash is not None:
                assert any(digest(p) == original for p in present), (run, name)
            elif (run / "checkpoints" / name).is_dir():
                assert digest(run / "checkpoints" / name) == original
        # the next prune finishes the journal and reaches exactly the plan
        result = invoke("prune", run, *args)
        assert result.exit_code == 0, result.output
        assert_oracle(run, before, dry, trash_root=None if trash is None else trash / run.name)
        assert not (run / TRASH).exists() and not (run / LOCK_FILE).exists()
        if trash is not None:  # no partial copy is left behind
            assert [p.name for p in (trash / run.name).iterdir() if p.name.startswith(".")] == []
    return killed


def test_random_kill_9_leaves_every_checkpoint_whole_or_in_trash_and_the_next_prune_finishes(copy_run, tmp_path):
    trash_dirs = [tmp_path / f"bin-{i}" if i % 3 == 2 else None for i in range(10)]
    assert _kill_trials(copy_run, trash_dirs, seed=8, max_delay=0.8) >= 3  # most really were killed mid-way


def test_random_kill_9_while_moving_to_trash_on_another_device(copy_run, tmp_path, tmpfs):
    # across devices a move is copy, rename into place, remove: a kill mid-copy leaves a
    # partial copy (removed by the next prune) and the source whole in the run's trash
    other = tmpfs(tmp_path / "other-device", "16m")
    assert _kill_trials(copy_run, [other / f"bin-{i}" for i in range(4)], seed=9, max_delay=1.0) >= 1
