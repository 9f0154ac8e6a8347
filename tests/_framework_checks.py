"""Shared by the framework integration tests: the data set, and the verbs run on a recorded run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.store.reader import read_predictions, read_run

runner = CliRunner()


def breast_cancer(n_train: int = 300, n_val: int = 101):
    """A standardised binary data set from scikit-learn (bundled: no download)."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))[: n_train + n_val]
    x, y = x[order].astype(np.float32), y[order].astype(np.int64)
    x = (x - x[:n_train].mean(0)) / x[:n_train].std(0)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def cli_json(*args: object) -> tuple[int, object]:
    result = runner.invoke(app, [str(a) for a in args] + ["--format", "json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def run_the_verbs(run: Path, metric: str) -> dict[str, object]:
    """rank, audit, pick and check on a recorded run; each must read it without error."""
    _, ranked = cli_json("rank", run, "--metric", metric, "--metric", "roc_auc")
    _, audited = cli_json("audit", run, "--fail-on", "never", "--resamples", "200")
    _, picked = cli_json("pick", run, "--metric", metric, "--resamples", "200")
    code, checked = cli_json("check", run, "--metric", metric, "--resamples", "200")
    return {"rank": ranked, "audit": audited, "pick": picked, "check": checked, "check_code": code}


def val_arrays(run: Path, name: str):
    r = read_run(run)
    return read_predictions(r, r.checkpoint(name))
