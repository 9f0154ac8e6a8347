"""`import raytune` and `import optuna` on real sweeps (tests/hpo_training.py), then `pick --across`.

A real Ray Tune sweep (8 trials on a local Ray with 2 CPUs, checkpoints written through
``tune.Checkpoint``) and a real Optuna study (sqlite storage, intermediate values per step,
a median pruner) train the same logistic regression at different learning rates; large rates
overshoot, so the best trial's best epoch is not its last. The right answer is computed here
from what the tools wrote (result.json, the study's intermediate values), independently of
ckptaudit, and `pick --across` must name that trial at that epoch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import hpo_training as hpo
import pytest
from typer.testing import CliRunner

from ckptaudit.cli import app

HERE = Path(__file__).resolve().parent
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    for w in words:
        assert w in lines[0], lines[0]


def reports(experiment: Path) -> dict[str, list[dict]]:
    """Every trial folder's reports, read straight from result.json."""
    out = {}
    for trial in sorted(p for p in experiment.iterdir() if (p / "result.json").is_file()):
        out[trial.name] = [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]
    return out


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    pytest.importorskip("ray.tune")
    pytest.importorskip("safetensors")
    return hpo.run_raytune(tmp_path_factory.mktemp("raytune"))


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    optuna = pytest.importorskip("optuna")
    pytest.importorskip("safetensors")
    root = tmp_path_factory.mktemp("optuna")
    db = root / "study.db"
    url = f"sqlite:///{db}"
    hpo.run_optuna(url, save_to=root / "ckpts")
    loaded = optuna.load_study(study_name="lr-sweep", storage=url)
    template = str(root / "ckpts" / "trial{number}" / "step{step}.safetensors")
    return {"db": db, "url": url, "trials": loaded.get_trials(deepcopy=False), "template": template}


# --------------------------------------------------------------------------- Ray Tune


def test_raytune_trials_become_runs_and_pick_names_the_best_trial_at_its_best_iteration(experiment, tmp_path):
    raw = reports(experiment)
    assert len(raw) == len(hpo.RATES)
    best_not_last = [t for t, rs in raw.items() if min(rs, key=lambda r: r["val_loss"]) is not rs[-1]]
    assert best_not_last, "the sweep must hold a trial whose best report is not its last"
    trial, report = min(((t, r) for t, rs in raw.items() for r in rs), key=lambda tr: tr[1]["val_loss"])
    assert report is not raw[trial][-1]  # the whole point: the winner's last report is not its best

    out = tmp_path / "sweep"
    done = cli("import", "raytune", experiment, out, "--selected-by", "val_loss:min", "-f", "json")
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert [t["trial"] for t in doc["trials"]] == sorted(raw)
    for name, rs in raw.items():
        run = out / name
        info = json.loads((run / "run.json").read_text())
        assert info["params"] == json.loads((experiment / name / "params.json").read_text())
        assert info["trial"]["id"] == rs[0]["trial_id"] and info["imported_from"] == "raytune" and "task" not in info
        for r in rs:  # every report is a checkpoint at epoch = training_iteration, logged as reported
            folder = run / "checkpoints" / (r.get("checkpoint_dir_name") or f"iteration_{r['training_iteration']:06d}")
            meta = json.loads((folder / "meta.json").read_text())
            assert meta["epoch"] == r["training_iteration"]
            assert meta["logged"] == {"val_loss": r["val_loss"], "val_acc": r["val_acc"]}
            if r.get("checkpoint_dir_name"):  # the weights are Ray's file, hard-linked
                original = experiment / name / r["checkpoint_dir_name"] / "model.safetensors"
                assert os.path.samefile(folder / "model.safetensors", original)
            else:
                assert meta["metrics_only"] is True

    picked = cli("pick", out, "--across", "-m", "val_loss", "-f", "json")
    assert picked.exit_code == 0, picked.output
    (p,) = json.loads(picked.stdout)
    assert Path(p["run"]).name == trial and p["checkpoint"] == report["checkpoint_dir_name"]
    assert p["epoch"] == report["training_iteration"] and p["value"] == report["val_loss"] and p["mode"] == "min"
    assert p["params"] == json.loads((experiment / trial / "params.json").read_text())  # what won, in the provenance
    # a logged metric has no per-row data: said, not faked
    assert p["expected_on_new_data"] is None and p["across"]["scope"] is None
    assert p["across"]["runs"] == len(raw) and "logged metric" in p["across"]["note"]
    assert p["across"]["checkpoints"] == sum(map(len, raw.values()))  # every report logged val_loss
    # the experiment folder is ranked as the sweep it holds (the default OUT lies inside it)
    assert cli("import", "raytune", experiment).exit_code == 0
    ranked = cli("rank", experiment / "ckptaudit", "-m", "val_loss", "-f", "json")
    assert ranked.exit_code == 0, ranked.output
    shutil.rmtree(experiment / "ckptaudit")


def test_raytune_predict_then_pick_across_corrects_for_the_whole_sweep(experiment, tmp_path):
    pytest.importorskip("torch")
    raw = reports(experiment)
    saved = [(t, r) for t, rs in raw.items() for r in rs if r.get("checkpoint_dir_name")]
    trial, report = min(saved, key=lambda tr: tr[1]["val_loss"])
    out = tmp_path / "sweep"
    assert cli("import", "raytune", experiment, out).exit_code == 0
    for name in raw:
        done = cli(
            "predict", out / name, "--model", f"{HERE / 'hpo_training.py'}:net", "--data", f"{HERE / 'hpo_training.py'}:val"
        )
        assert done.exit_code == 0, done.output
    picked = cli("pick", out, "--across", "-m", "log_loss", "--resamples", "300", "-f", "json")
    assert picked.exit_code == 0, picked.output
    (p,) = json.loads(picked.stdout)
    # the log loss of the re-created predictions is the loss the trainable reported
    assert Path(p["run"]).name == trial and p["checkpoint"] == report["checkpoint_dir_name"]
    assert p["epoch"] == report["training_iteration"] and math.isclose(p["value"], report["val_loss"], rel_tol=1e-5)
    # the winner was selected among every trial's checkpoints: so is its correction
    assert p["across"] == {"runs": len(raw), "checkpoints": len(saved), "scope": "sweep", "note": None}
    tied = p["tied_best"]["checkpoints"]
    assert tied[0] == f"{trial}/{report['checkpoint_dir_name']}"
    assert all(name.split("/")[0] in raw for name in tied)
    expected = p["expected_on_new_data"]
    assert expected["optimism"] == pytest.approx(expected["value"] - p["value"])  # a loss: flattered means lower
    assert expected["ci95"][0] <= expected["value"] <= expected["ci95"][1]


# --------------------------------------------------------------------------- Optuna


def test_optuna_trials_become_runs_and_pick_names_the_best_trial_at_its_best_step(study, tmp_path):
    kept = [t for t in study["trials"] if t.state.name in ("COMPLETE", "PRUNED")]
    assert any(t.state.name == "PRUNED" for t in kept)
    best_not_last = [t for t in kept if min(t.intermediate_values.items(), key=lambda kv: kv[1])[0] != max(t.intermediate_values)]
    assert best_not_last, "the study must hold a trial whose best intermediate value is not its last"
    number, step, value = min(((t.number, s, v) for t in kept for s, v in t.intermediate_values.items()), key=lambda x: x[2])
    before = hashlib.sha256(study["db"].read_bytes()).hexdigest()

    out = tmp_path / "sweep"
    done = cli("import", "optuna", "--storage", study["url"], out, "-f", "json")
    assert done.exit_code == 0, done.output
    assert hashlib.sha256(study["db"].read_bytes()).hexdigest() == before  # read-only
    for t in kept:
        info = json.loads((out / f"trial_{t.number:05d}" / "run.json").read_text())
        assert info["params"] == t.params and info["selected_by"] == {"metric": "value", "mode": "min"}
        assert info["trial"]["number"] == t.number and info["trial"]["state"] == t.state.name
        steps = sorted(p.name for p in (out / f"trial_{t.number:05d}" / "checkpoints").iterdir())
        assert steps == [f"step_{s:06d}" for s in sorted(t.intermediate_values)]

    picked = cli("pick", out, "--across", "-m", "value", "-f", "json")
    assert picked.exit_code == 0, picked.output
    (p,) = json.loads(picked.stdout)
    assert Path(p["run"]).name == f"trial_{number:05d}" and p["epoch"] == step and p["value"] == value and p["mode"] == "min"
    assert p["value"] < study["trials"][number].value  # its reported (last) value is not its best
    assert p["expected_on_new_data"] is None and "logged metric" in p["across"]["note"]
    table = cli("pick", out, "--across", "-m", "value")
    assert "no selection-corrected estimate" in table.output
    # a study's checkpoints hold values, no weights: nothing to place, said in one line
    one_line_error(cli("pick", out, "--across", "-m", "value", "--link", tmp_path / "best"), "metrics-only", "nothing to place")
    assert not (tmp_path / "best").exists()
    # metrics that need predictions say why they cannot apply
    one_line_error(cli("rank", out / f"trial_{number:05d}", "-m", "accuracy"), "no 'task' yet")


def test_optuna_with_the_weights_it_saved_predicts_and_corrects_across_the_sweep(study, tmp_path):
    pytest.importorskip("torch")
    kept = [t for t in study["trials"] if t.state.name in ("COMPLETE", "PRUNED")]
    number, step, value = min(((t.number, s, v) for t in kept for s, v in t.intermediate_values.items()), key=lambda x: x[2])
    out = tmp_path / "sweep"
    done = cli("import", "optuna", "--storage", study["url"], out, "--checkpoints", study["template"], "-f", "json")
    assert done.exit_code == 0, done.output
    assert all(t["metrics only"] == 0 for t in json.loads(done.stdout)["trials"])
    for t in kept:
        args = ("--model", f"{HERE / 'hpo_training.py'}:net", "--data", f"{HERE / 'hpo_training.py'}:val")
        assert cli("predict", out / f"trial_{t.number:05d}", *args).exit_code == 0
    picked = cli("pick", out, "--across", "-m", "log_loss", "--resamples", "300", "-f", "json")
    assert picked.exit_code == 0, picked.output
    (p,) = json.loads(picked.stdout)
    assert Path(p["run"]).name == f"trial_{number:05d}" and p["epoch"] == step
    assert math.isclose(p["value"], value, rel_tol=1e-5)  # the intermediate value was this log loss
    steps = sum(len(t.intermediate_values) for t in kept)
    assert p["across"] == {"runs": len(kept), "checkpoints": steps, "scope": "sweep", "note": None}
    assert p["tied_best"]["checkpoints"][0] == f"trial_{number:05d}/step_{step:06d}"


# --------------------------------------------------------------------------- bad input


def test_bad_raytune_input_is_one_line_and_writes_nothing(experiment, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(cli("import", "raytune", empty, tmp_path / "out"), "not a Ray Tune experiment folder")
    one_line_error(cli("import", "raytune", tmp_path / "missing", tmp_path / "out"), "not a folder")
    trial = next(p for p in sorted(experiment.iterdir()) if (p / "result.json").is_file())
    broken = tmp_path / "broken"
    shutil.copytree(trial, broken / trial.name)
    lines = (broken / trial.name / "result.json").read_text().splitlines(keepends=True)
    (broken / trial.name / "result.json").write_text(lines[0] + '{"val_loss": 0.5, \n' + "".join(lines[1:]))
    one_line_error(cli("import", "raytune", broken, tmp_path / "out"), "result.json", "line 2", "malformed JSON")
    (broken / trial.name / "result.json").write_text("".join(lines) + '{"val_loss": 0.1, "training_it')  # torn last write
    torn = cli("import", "raytune", broken, tmp_path / "torn")
    assert torn.exit_code == 0 and "cut short" in torn.output
    assert len(list((tmp_path / "torn" / trial.name / "checkpoints").iterdir())) == len(lines)
    one_line_error(cli("import", "raytune", broken, tmp_path / "torn"), "already exists")
    one_line_error(cli("import", "raytune", broken, tmp_path / "x", "--storage", "sqlite:///a.db"), "--storage")
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_restored_trial_and_an_unnamed_folder_are_read_as_ray_left_them(experiment, tmp_path):
    trial = next(p for p in sorted(experiment.iterdir()) if (p / "result.json").is_file())
    copy = tmp_path / "exp" / trial.name
    shutil.copytree(trial, copy)
    lines = (copy / "result.json").read_text().splitlines(keepends=True)
    first = json.loads(lines[0])
    assert "checkpoint_dir_name" not in first or first["checkpoint_dir_name"] is None  # iteration 1 saved nothing
    again = {**first, "val_loss": first["val_loss"] / 2}  # the restored attempt reports iteration 1 again
    (copy / "result.json").write_text("".join(lines) + json.dumps(again) + "\n")
    shutil.copytree(copy / json.loads(lines[1])["checkpoint_dir_name"], copy / "checkpoint_000099")  # named by no report
    done = cli("import", "raytune", tmp_path / "exp", tmp_path / "out")
    assert done.exit_code == 0, done.output
    assert "restored" in done.output and "checkpoint_000099: no report" in done.output
    run = tmp_path / "out" / trial.name
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(
        [json.loads(line)["checkpoint_dir_name"] for line in lines[1:]] + ["iteration_000001"]
    )
    meta = json.loads((run / "checkpoints" / "iteration_000001" / "meta.json").read_text())
    assert meta["logged"]["val_loss"] == again["val_loss"]


def test_bad_optuna_input_is_one_line_and_writes_nothing(study, tmp_path):
    out = tmp_path / "out"
    one_line_error(cli("import", "optuna", "--storage", "postgresql://user@host/db", out), "only sqlite:///PATH")
    missing = tmp_path / "nope.db"
    one_line_error(cli("import", "optuna", "--storage", f"sqlite:///{missing}", out), "no such Optuna database")
    assert not missing.exists()  # never created by looking
    text = tmp_path / "notes.db"
    text.write_text("not a database\n")
    one_line_error(cli("import", "optuna", "--storage", f"sqlite:///{text}", out), "not an Optuna study database")
    one_line_error(
        cli("import", "optuna", "--storage", study["url"], "--study", "lr-swep", out), "no study 'lr-swep'", "lr-sweep"
    )
    one_line_error(cli("import", "optuna", out), "--storage")
    one_line_error(cli("import", "optuna", "--storage", study["url"], out, "--task", "binary"), "--task", "--checkpoints")
    one_line_error(cli("import", "optuna", "--storage", study["url"], out, "--checkpoints", "x{nope}"), "{number}")
    assert not out.exists()


def test_pick_across_runs_validated_on_other_rows_says_its_correction_is_the_winners_run_only():
    runs = HERE.parent / "fixtures" / "runs"
    picked = cli("pick", runs / "leak-ids", runs / "noisy-train", "-m", "recall", "--across", "--resamples", "100", "-f", "json")
    assert picked.exit_code == 0, picked.output
    (p,) = json.loads(picked.stdout)
    assert p["across"]["scope"] is None and "not validated on the same rows" in p["across"]["note"]
    alone = cli("pick", p["run"], "-m", "recall", "--resamples", "100", "-f", "json")
    (q,) = json.loads(alone.stdout)
    assert p["expected_on_new_data"] == q["expected_on_new_data"]  # the winner's run's own correction, said so
