"""The metric-spec language: names, aliases, options, directions and helpful errors."""

from __future__ import annotations

import pytest

from ckptaudit.errors import MetricError
from ckptaudit.metrics.spec import parse_metric


@pytest.mark.parametrize(
    "text,name,mode",
    [
        ("recall", "recall", "max"),
        ("RECALL", "recall", "max"),
        ("pr_auc", "average_precision", "max"),
        ("f2", "fbeta", "max"),
        ("log_loss", "log_loss", "min"),
        ("rmse", "rmse", "min"),
    ],
)
def test_builtin_names_and_directions(text, name, mode):
    spec = parse_metric(text)
    assert (spec.name, spec.mode, spec.text) == (name, mode, text)


def test_options_are_parsed():
    spec = parse_metric("recall:class=fraud,threshold=0.3")
    assert spec.class_ref == "fraud" and spec.threshold == 0.3
    assert parse_metric("f2").beta == 2.0
    assert parse_metric("f0.5").beta == 0.5
    assert parse_metric("top_k_accuracy:k=5").k == 5
    assert parse_metric("f1:average=micro").average == "micro"


def test_logged_metrics_need_a_direction_unless_the_name_gives_it():
    assert parse_metric("val_loss", logged=["val_loss"]).mode == "min"
    assert parse_metric("val_auc", logged=["val_auc"]).mode == "max"  # base name: a built-in
    with pytest.raises(MetricError, match="direction is unknown"):
        parse_metric("val_profit", logged=["val_profit"])
    assert parse_metric("val_profit:mode=max", logged=["val_profit"]).mode == "max"
    assert parse_metric("val_profit", mode="max", logged=["val_profit"]).mode == "max"


def test_custom_function_needs_mode():
    spec = parse_metric("pkg.mod:func:mode=min")
    assert (spec.source, spec.name, spec.mode) == ("custom", "pkg.mod:func", "min")
    with pytest.raises(MetricError, match="needs a direction"):
        parse_metric("pkg.mod:func")


@pytest.mark.parametrize(
    "text,message",
    [
        ("recal", "did you mean recall"),
        ("accuracy:mode=min", "always maximised"),
        ("recall:class=1,average=macro", "class or average"),
        ("recall:threshold=2", "threshold must lie in"),
        ("recall:threshold=abc", "not a number"),
        ("f1:beta=2", "has no option beta"),
        ("recall:class", "not KEY=VALUE"),
        ("", "empty metric"),
        ("top_k_accuracy:k=0", "k must be at least 1"),
    ],
)
def test_malformed_specs_are_one_line_errors(text, message):
    with pytest.raises(MetricError, match=message):
        parse_metric(text)


@pytest.mark.parametrize(
    "logged,base",
    [
        ("val_accuracy", "accuracy"),
        ("val_acc", "accuracy"),
        ("valid/recall", "recall"),
        ("eval-f1", "f1"),
        ("recall:class=1", "recall"),
        ("val_loss", "loss"),
        ("train_loss", "train_loss"),
    ],
)
def test_base_name_strips_split_prefixes_options_and_aliases(logged, base):
    from ckptaudit.metrics.spec import base_name

    assert base_name(logged) == base
