"""The report of a grouped run shows the per-slice table, with the numbers of
`rank --by group` (the same function), and with a baseline in the policy the churn flips."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ckptaudit import Recorder

ROOT = Path(__file__).resolve().parents[1]
SLICES = np.array(["land", "water", "marsh"])


def _ckptaudit(*args: object) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ckptaudit", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail(f"no ckptaudit console script beside {sys.executable}: install the project (pip install -e .)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CKPTAUDIT_DEBUG", None)
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)


def _grouped_run(path: Path, seed: int = 0, n: int = 900, epochs: int = 4) -> Path:
    """Label predictions whose accuracy differs by slice and by epoch (a checkpoint that
    gets better on one slice while it gets worse on another)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    g = SLICES[np.arange(n) % 3]
    rec = Recorder(path, task="binary", output="label")
    for e in range(epochs):
        acc = np.where(g == "land", 0.7 + 0.05 * e, np.where(g == "water", 0.9 - 0.05 * e, 0.8))
        pred = np.where(rng.random(n) < acc, y, 1 - y)
        rec.save(e, val_target=y, val_output=pred, val_groups=g)
    rec.choose("epoch-0002")
    return path


_CELL = re.compile(
    r"<td[^>]*?data-group=\"([^\"]*)\" data-ck=\"([^\"]*)\"(?: data-v=\"([^\"]*)\")?(?: data-lo=\"([^\"]*)\" data-hi=\"([^\"]*)\")?"
)


def _cells(page: str) -> dict[tuple[str, str], tuple[float | None, list[float] | None]]:
    out = {}
    for group, ckpt, v, lo, hi in _CELL.findall(page):
        out[(html.unescape(ckpt), html.unescape(group))] = (
            float(v) if v else None,
            [float(lo), float(hi)] if lo else None,
        )
    return out


def test_the_report_of_a_grouped_run_shows_the_rank_by_group_table(tmp_path):
    run = _grouped_run(tmp_path / "run")
    ranked = _ckptaudit("rank", run, "--metric", "accuracy", "--by", "group", "--resamples", "200", "--format", "json")
    assert ranked.returncode == 0, ranked.stderr
    doc = json.loads(ranked.stdout)
    records = doc["records"] if isinstance(doc, dict) else doc
    page_path = tmp_path / "report.html"
    made = _ckptaudit("report", run, "-o", page_path, "--metric", "accuracy", "--resamples", "200")
    assert made.returncode == 0, made.stderr
    page = page_path.read_text(encoding="utf-8")
    assert "Slices: accuracy per group" in page
    cells = _cells(page)
    assert len(records) == 4 * 4 and len(cells) == len(records)  # 4 checkpoints x (3 slices + worst)
    for r in records:
        assert cells[(r["checkpoint"], r["group"])] == (r["value"], r["ci95"]), r
    # the slices really differ: the table is not one number repeated
    land = [cells[(f"epoch-{e:04d}", "land")][0] for e in range(4)]
    water = [cells[(f"epoch-{e:04d}", "water")][0] for e in range(4)]
    assert land[3] > land[0] + 0.05 and water[3] < water[0] - 0.05
    assert "(300 rows)" in page


def test_a_run_without_groups_has_no_slice_table(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    rec = Recorder(tmp_path / "plain", task="binary", output="label")
    for e in range(2):
        rec.save(e, val_target=y, val_output=np.where(rng.random(300) < 0.8, y, 1 - y))
    page_path = tmp_path / "report.html"
    made = _ckptaudit("report", tmp_path / "plain", "-o", page_path, "--metric", "accuracy", "--resamples", "200")
    assert made.returncode == 0, made.stderr
    page = page_path.read_text(encoding="utf-8")
    assert "Slices:" not in page and "data-group=" not in page


def test_with_a_baseline_in_the_policy_the_report_shows_the_flips(tmp_path):
    run = _grouped_run(tmp_path / "run", seed=2)
    baseline = run / "checkpoints" / "epoch-0000"
    config = tmp_path / "ckptaudit.toml"
    config.write_text(f'metric = "accuracy"\nbaseline = {json.dumps(str(baseline))}\nfail_on = "never"\n')
    checked = _ckptaudit("check", run, "--config", config, "--format", "json")
    rule = next(r for r in json.loads(checked.stdout)["rules"] if r["name"] == "churn")
    page_path = tmp_path / "report.html"
    made = _ckptaudit("report", run, "-o", page_path, "--config", config, "--resamples", "200")
    assert made.returncode == 0, made.stderr
    page = page_path.read_text(encoding="utf-8")
    assert "Flips against the baseline" in page
    for s in rule["details"]["slices"]:
        want = f"<tr><td>{s['group']}</td><td class='num'>{s['rows']}</td><td class='num'>{s['negative_flips']} ({s['negative_flip_rate']:.2%})</td>"
        assert want in page, want
    assert rule["details"]["overall"]["negative_flips"] > 0
