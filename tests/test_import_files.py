"""`import files` on the plain loop the seed documents teach: checkpoint_epoch_{N}.pth each
epoch and best_model.pth by val_loss (tests/route_models.py, a real seeded training).

What training kept is matched to its epoch by tensor content (``--chosen``, or the copy the
glob catches), and the task is never guessed at import: ``predict`` reads it from the data,
or checks the given one against the outputs before anything is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

import route_models as rm  # noqa: E402

from ckptaudit.cli import app  # noqa: E402

MODELS = Path(__file__).resolve().parent / "route_models.py"
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def predict_args(run: Path, task: str = "binary") -> tuple:
    return ("predict", run, "--model", f"{MODELS}:net_{task}", "--data", f"{MODELS}:val_{task}", "--device", "cpu")


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("loop")
    info = rm.train_plain("binary", root)
    return {"files": root / "files", "best": f"epoch-{info['best_epoch']:04d}", "recorded": root / "recorded"}


def test_the_copy_the_glob_catches_is_what_training_chose(loop, tmp_path):
    run = tmp_path / "run"
    result = cli("import", "files", f"{loop['files']}/*.pth", run, "--selected-by", "val_loss:min")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [f"epoch-{e:04d}" for e in range(rm.EPOCHS)]
    info = rm.run_json(run)
    assert info["chosen"] == loop["best"] and info["selected_by"] == {"metric": "val_loss", "mode": "min"}
    assert f"best_model.pth holds the tensors of {loop['best']}" in result.output
    assert "task" not in info  # not guessed: read at predict


def test_chosen_names_the_kept_file_outside_the_glob(loop, tmp_path):
    run = tmp_path / "run"
    best = loop["files"] / "best_model.pth"
    result = cli("import", "files", f"{loop['files']}/checkpoint_epoch_*.pth", run, "--chosen", best, "--task", "binary")
    assert result.exit_code == 0, result.output
    assert rm.run_json(run)["chosen"] == loop["best"]
    assert "--selected-by" in result.output  # says the selection metric is unknown, instead of silence
    # a file whose tensors are no epoch's is refused in one line, nothing written
    other = tmp_path / "other.pth"
    rm.train_plain("regression", tmp_path / "other-train")
    shutil.copy(tmp_path / "other-train" / "files" / "checkpoint_epoch_0.pth", other)
    bad = cli("import", "files", f"{loop['files']}/checkpoint_epoch_*.pth", tmp_path / "bad", "--chosen", other)
    assert bad.exit_code == 2 and "equal to no imported checkpoint" in bad.output and len(bad.output.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_chosen_may_name_an_epoch_file_the_glob_also_catches(loop, tmp_path):
    run = tmp_path / "run"
    first = loop["files"] / "checkpoint_epoch_1.pth"
    result = cli("import", "files", f"{loop['files']}/*.pth", run, "--chosen", first, "--task", "binary")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [f"epoch-{e:04d}" for e in range(rm.EPOCHS)]
    assert rm.run_json(run)["chosen"] == "epoch-0001"  # --chosen decides; best_model.pth is only noted
    assert "best_model.pth holds the tensors of" in result.output and "not imported twice" in result.output


def test_a_file_the_glob_catches_that_copies_no_epoch_is_refused(loop, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(loop["files"], src)
    rm.train_plain("regression", tmp_path / "other-train")
    shutil.copy(tmp_path / "other-train" / "files" / "checkpoint_epoch_0.pth", src / "final_model.pth")
    result = cli("import", "files", f"{src}/*.pth", tmp_path / "run")
    assert result.exit_code == 2 and "final_model.pth" in result.output and "equal no epoch file" in result.output
    assert not (tmp_path / "run").exists()


def test_without_task_every_reader_says_so_until_predict_reads_it(loop, tmp_path):
    run = tmp_path / "run"
    assert cli("import", "files", f"{loop['files']}/*.pth", run).exit_code == 0
    early = cli("rank", run, "-m", "recall")
    assert early.exit_code == 2 and "no 'task' yet" in early.output and "predict" in early.output
    done = cli(*predict_args(run), "-f", "json")
    assert done.exit_code == 0, done.output
    assert "binary" in json.loads(done.stdout)["task_note"]
    info = rm.run_json(run)
    assert (info["task"], info["output"], info["positive_class"]) == ("binary", "logit", 1)
    for ckpt in sorted((loop["recorded"] / "checkpoints").iterdir()):  # and the predictions are the recorder's
        with np.load(ckpt / "val.npz") as a, np.load(run / "checkpoints" / ckpt.name / "val.npz") as b:
            assert np.array_equal(a["output"], b["output"])
    assert cli("rank", run, "-m", "recall").exit_code == 0


def test_a_task_the_outputs_contradict_fails_at_predict_not_at_rank(loop, tmp_path):
    run = tmp_path / "run"
    assert cli("import", "files", f"{loop['files']}/checkpoint_epoch_*.pth", run, "--task", "multiclass").exit_code == 0
    result = cli(*predict_args(run))
    assert result.exit_code == 2
    assert "do not fit the run's task 'multiclass'" in result.output
    assert not list(run.rglob("val.npz"))  # nothing written for every reader to refuse later
    again = cli(*predict_args(run), "--task", "binary")
    assert again.exit_code == 2 and "contradicts run.json" in again.output


def test_infer_task_reads_shapes_and_values_and_refuses_the_ambiguous():
    from ckptaudit.errors import UsageError
    from ckptaudit.inference.tasks import infer_task

    y2 = np.array([0, 1, 1, 0])
    assert infer_task(y2, np.array([-1.0, 2.0, 0.5, 0.1]))[:2] == ("binary", "logit")
    assert infer_task(y2, np.array([0.1, 0.9, 0.5, 0.2]))[:2] == ("binary", "probability")
    probs = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    assert infer_task(y2, probs)[:2] == ("multiclass", "probability")
    assert infer_task(y2, probs * 3 - 1)[:2] == ("multiclass", "logit")
    with pytest.raises(UsageError, match="--task binary or --task multiclass"):
        infer_task(y2, probs[:, :2])  # binary or 2-class multiclass: the metrics differ, so the user says
    assert infer_task(y2, probs[:, :2] * 3, task="binary")[:2] == ("binary", "logit")
    assert infer_task(np.array([0.5, 1.5, 2.0, 3.2]), np.array([0.4, 1.1, 2.0, 3.0]))[:2] == ("regression", "value")
    assert infer_task(np.eye(3, dtype=int), np.full((3, 3), 0.3))[:2] == ("multilabel", "probability")
    with pytest.raises(UsageError, match="--task"):
        infer_task(np.array([0, 3, 5, 2]), np.array([0.5, 3.1, 4.0, 2.2]))  # counts: regression or labels?
    with pytest.raises(UsageError, match="does not fit"):
        infer_task(y2, np.array([0.1, 0.9, 0.5, 0.2]), task="binary", kind="value")
