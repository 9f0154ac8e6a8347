"""`prune` against a hostile run folder (issue 18, items 1-4), each with the hash oracle:
the journal is data, bind mounts are never entered, aliases of every shape protect, pins of
every spelling protect (or the prune refuses)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ckptaudit.pruning import LOG_FILE, TRASH_DIR
from ckptaudit.store.pins import PINS_FILE, add_pin, read_pins
from ckptaudit.store.pruned import PRUNED_FILE
from tests.test_prune_safety import digest, invoke, prune_json

TRASH = f"checkpoints/{TRASH_DIR}"
IGNORED = (LOG_FILE, PRUNED_FILE)


def bare(tree: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tree.items() if k not in IGNORED}


# ------------------------------------------------------------------ 1. the journal names the trash


def test_a_journal_naming_a_trash_folder_outside_the_run_is_never_obeyed(copy_run, tmp_path):
    run = copy_run("fraud")
    # a crafted run: something waits in the run's trash, and the journal says to move it to a
    # Python lib folder (a .pth file there would run at the next interpreter start)
    planted = run / TRASH / "evil"
    planted.mkdir(parents=True)
    (planted / "evil.pth").write_text("import os; os.system('echo owned')\n")
    target = tmp_path / "lib" / "site-packages"
    (run / LOG_FILE).write_text(
        json.dumps({"action": "plan", "delete": [], "finish": ["evil"], "trash": {"evil": str(target)}}) + "\n"
    )
    before = digest(run)
    for args in (["-m", "recall", "--keep", "2", "--yes"], ["--resume"], ["-m", "recall", "--keep", "2"]):
        result = invoke("prune", run, *args)
        assert result.exit_code == 2, result.output
        assert str(target) in result.stderr and "--trash" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "lib").exists()  # nothing created outside the run
        assert digest(run) == before
    # only the command line may name a destination outside the run
    done = invoke("prune", run, "--resume", "--trash", target)
    assert done.exit_code == 0, done.output
    assert (target / "fraud" / "evil" / "evil.pth").is_file()


# ------------------------------------------------------------------ 2. bind mounts


@pytest.fixture
def bind_mount():
    mounted: list[Path] = []

    def mount(source: Path, point: Path) -> Path:
        point.mkdir(parents=True, exist_ok=True)
        if shutil.which("mount") is None or os.geteuid() != 0:
            pytest.skip("a bind mount needs root and mount(8)")
        result = subprocess.run(["mount", "--bind", str(source), str(point)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"mounting is not permitted here: {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    from ckptaudit.store.prunefs import mount_points

    # NOTE: a prune that (wrongly) renamed the checkpoint moved the mount with it: unmount
    # every mount under the test's folders, wherever it went
    roots = {str(p.parent.parent.parent.parent) for p in mounted}
    for point in sorted(mount_points(), reverse=True):
        if any(point.startswith(r + "/") for r in roots):
            subprocess.run(["umount", "-l", point], capture_output=True)


@pytest.mark.parametrize("extra", [(), ("--all",)])
def test_a_bind_mount_of_the_same_file_system_inside_a_doomed_checkpoint_is_never_entered(copy_run, tmp_path, bind_mount, extra):
    run = copy_run("fraud")
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.bin").write_bytes(b"outside the run, same file system")
    (outside / "model.pt").write_bytes(b"not a weights file of the run")
    point = bind_mount(outside, run / "checkpoints" / "epoch-0001" / "data")
    assert os.stat(point).st_dev == os.stat(run).st_dev  # the device number cannot tell
    outside_before = digest(outside)
    before = digest(run)
    result = invoke("prune", run, "-m", "recall", "--keep", "2", "--yes", *extra)
    assert result.exit_code == 2, result.output
    assert "mount point" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert digest(outside) == outside_before
    assert bare(digest(run)) == bare(before)


def test_remove_tree_refuses_a_bind_mount_found_after_planning(tmp_path, bind_mount):
    from ckptaudit.store.prunefs import CrossDeviceError, remove_tree

    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.bin").write_bytes(b"x")
    doomed = tmp_path / "doomed"
    (doomed / "sub").mkdir(parents=True)
    bind_mount(outside, doomed / "sub" / "mnt")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(CrossDeviceError):
            remove_tree(fd, "doomed", os.stat(tmp_path).st_dev, doomed)
    finally:
        os.close(fd)
    assert (outside / "keep.bin").read_bytes() == b"x"


# ------------------------------------------------------------------ 3. aliases


def test_aliases_into_a_checkpoint_and_with_in_progress_names_protect_it(copy_run):
    run = copy_run("fraud")
    ckpts = run / "checkpoints"
    os.symlink("epoch-0001/model.pt", ckpts / "best.pt")  # into a checkpoint
    os.symlink("epoch-0002", ckpts / ".best")  # a hidden name
    os.symlink("epoch-0003", ckpts / "best.tmp")  # an in-progress-looking name
    before = digest(run)
    for extra in ((), ("--all",)):
        plan = prune_json(run, "-m", "recall", "--keep", "1", *extra)[0]
        rows = {e["checkpoint"]: e for e in plan["entries"]}
        assert rows["epoch-0001"]["action"] == "keep" and "aliased:best.pt" in rows["epoch-0001"]["kept_by"]
        assert rows["epoch-0002"]["action"] == "keep" and "aliased:.best" in rows["epoch-0002"]["kept_by"]
        assert rows["epoch-0003"]["action"] == "keep" and "aliased:best.tmp" in rows["epoch-0003"]["kept_by"]
    prune_json(run, "-m", "recall", "--keep", "1", "--yes")
    after = digest(run)
    for name in ("epoch-0001", "epoch-0002", "epoch-0003"):
        assert {k: v for k, v in after.items() if k.startswith(f"checkpoints/{name}")} == {
            k: v for k, v in before.items() if k.startswith(f"checkpoints/{name}")
        }
    assert os.path.exists(ckpts / "best.pt")


# ------------------------------------------------------------------ 4. pins of every spelling


@pytest.mark.parametrize("spelling", ["./epoch-0001", "epoch-0001/", "checkpoints/epoch-0001"])
def test_a_pin_of_any_spelling_is_normalised_and_protects(copy_run, spelling):
    run = copy_run("fraud")
    add_pin(run, spelling)
    assert [p.checkpoint for p in read_pins(run)] == ["epoch-0001"]
    before = digest(run)
    prune_json(run, "-m", "recall", "--keep", "1", "--yes")
    kept = {k: v for k, v in digest(run).items() if k.startswith("checkpoints/epoch-0001")}
    assert kept == {k: v for k, v in before.items() if k.startswith("checkpoints/epoch-0001")} and kept


@pytest.mark.parametrize("spelling", ["./epoch-0002", "epoch-0002/", "checkpoints/epoch-0002"])
def test_a_hand_written_pin_spelled_as_a_path_still_protects(copy_run, spelling):
    run = copy_run("fraud")
    (run / PINS_FILE).write_text(json.dumps({"format": "ckptaudit-pins/1", "pins": [{"checkpoint": spelling}]}))
    plan = prune_json(run, "-m", "recall", "--keep", "1")[0]
    assert "pinned" in {e["checkpoint"]: e for e in plan["entries"]}["epoch-0002"]["kept_by"]


@pytest.mark.parametrize("spelling", ["epoch-9999", "../other/epoch-0001", "/etc", "checkpoints/epoch-0001/model.pt"])
def test_a_pin_prune_cannot_resolve_is_refused(copy_run, spelling):
    run = copy_run("fraud")
    (run / PINS_FILE).write_text(json.dumps({"format": "ckptaudit-pins/1", "pins": [{"checkpoint": spelling}]}))
    before = digest(run)
    result = invoke("prune", run, "-m", "recall", "--keep", "1", "--yes")
    assert result.exit_code == 2 and "pin" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert digest(run) == before
