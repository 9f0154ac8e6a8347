"""Metric specs: the small language users type after ``--metric``.

Syntax (documented in docs/metrics.md)::

    NAME                      recall, roc_auc, f2, val_loss
    NAME:OPT=VALUE[,OPT=VALUE] recall:class=fraud  f1:average=micro  precision:threshold=0.3
    MODULE:FUNCTION[:mode=max] mypkg.metrics:profit:mode=max   (a user's own function)

Names are case-insensitive for built-ins. A name that is not built in is looked up in
what training logged in meta.json (``val_loss``); its direction is inferred only where it
is unambiguous (a name containing "loss" is minimised) and otherwise must be given with
``:mode=max``/``:mode=min`` or ``--mode``. A misspelt name is an error that suggests the
closest names.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import MetricError
from ..limits import MAX_ECE_BINS

MAX, MIN = "max", "min"

#: built-in name -> (direction, family). Families decide which runs a metric applies to.
BUILTINS: dict[str, tuple[str, str]] = {
    "accuracy": (MAX, "label"),
    "balanced_accuracy": (MAX, "label"),
    "precision": (MAX, "label"),
    "recall": (MAX, "label"),
    "f1": (MAX, "label"),
    "fbeta": (MAX, "label"),
    "specificity": (MAX, "label"),
    "npv": (MAX, "label"),
    "mcc": (MAX, "label"),
    "cohen_kappa": (MAX, "label"),
    "roc_auc": (MAX, "score"),
    "average_precision": (MAX, "score"),
    "log_loss": (MIN, "score"),
    "brier": (MIN, "score"),
    "ece": (MIN, "score"),
    "top_k_accuracy": (MAX, "score"),
    "mse": (MIN, "regression"),
    "rmse": (MIN, "regression"),
    "mae": (MIN, "regression"),
    "r2": (MAX, "regression"),
}

ALIASES: dict[str, str] = {
    "pr_auc": "average_precision",
    "auprc": "average_precision",
    "auroc": "roc_auc",
    "auc": "roc_auc",
    "acc": "accuracy",
    "kappa": "cohen_kappa",
    "tpr": "recall",
    "sensitivity": "recall",
    "tnr": "specificity",
    "ppv": "precision",
    "brier_score": "brier",
    "top_k": "top_k_accuracy",
}

#: options each built-in accepts (besides ``mode``)
_LABEL_OPTS = {"average", "class", "threshold"}
OPTIONS: dict[str, set[str]] = {name: set(_LABEL_OPTS) for name, (_, fam) in BUILTINS.items() if fam == "label"}
OPTIONS["fbeta"] = _LABEL_OPTS | {"beta"}
OPTIONS["accuracy"] = {"threshold"}
OPTIONS["balanced_accuracy"] = {"threshold"}
OPTIONS["cohen_kappa"] = {"threshold"}
OPTIONS["mcc"] = {"threshold", "class"}
OPTIONS.update(
    roc_auc={"average", "class"},
    average_precision={"average", "class"},
    log_loss=set(),
    brier=set(),
    ece={"bins"},
    top_k_accuracy={"k"},
    mse=set(),
    rmse=set(),
    mae=set(),
    r2=set(),
)

AVERAGES = ("macro", "micro", "weighted")
_FBETA_SHORT = re.compile(r"^f(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric spec.

    ``text`` is what the user typed (the key under which results are reported);
    ``source`` is "builtin", "logged" or "custom"; ``name`` is the canonical built-in
    name, the logged key, or the ``module:function`` path. ``class_index`` is filled in
    per run once the class is resolved (``class_ref`` is what the user typed).
    """

    text: str
    name: str
    source: str
    mode: str
    family: str | None = None
    average: str | None = None
    class_ref: str | None = None
    class_index: int | None = None
    threshold: float | None = None
    beta: float | None = None
    k: int | None = None
    bins: int | None = None
    options: dict[str, str] = field(default_factory=dict, compare=False)
    #: an operating point's question (:class:`~ckptaudit.metrics.operating.OperatingPoint`;
    #: None for every other metric)
    operating: Any = None
    #: slices (:mod:`ckptaudit.metrics.groups`): "worst" for ``worst_group(M)``; the group
    #: of ``M:group=NAME``; the group column (``by=``, None: the default column)
    group_agg: str | None = None
    group_name: str | None = None
    group_column: str | None = None

    @property
    def maximize(self) -> bool:
        """True when larger values are better."""
        return self.mode == MAX

    def better(self, a: float, b: float) -> bool:
        """True when value ``a`` is strictly better than ``b`` under this metric."""
        return a > b if self.maximize else a < b

    def for_run(
        self, classes: tuple[str, ...] | None, task: str, positive_class: int, n_classes: int | None = None
    ) -> MetricSpec:
        """Resolve ``class=`` against a run's class names; binary indices are re-coded
        so that 1 is the positive class, as the metric kernels expect. ``n_classes`` is
        the run's number of classes where run.json declares it."""
        if self.class_ref is None:
            return self
        ref = self.class_ref
        index: int | None = None
        if classes is not None:
            lowered = [c.lower() for c in classes]
            if ref.lower() in lowered:
                index = lowered.index(ref.lower())
        if index is None:
            if re.fullmatch(r"\d+", ref):
                index = int(ref)
            else:
                known = ", ".join(classes) if classes else "none (run.json has no classes)"
                raise MetricError(f"metric {self.text!r}: no class named {ref!r}; the run's classes are {known}")
        if n_classes is not None and task != "binary" and index >= n_classes:
            raise MetricError(f"metric {self.text!r}: class {index} does not exist (the run has {n_classes} classes)")
        if task == "binary":
            if index > 1:
                raise MetricError(f"metric {self.text!r}: class {index} does not exist in a binary run")
            index = 1 if index == positive_class else 0
        return replace(self, class_index=index)


def known_names() -> list[str]:
    """Every built-in name and alias, for suggestions and docs."""
    return sorted(set(BUILTINS) | set(ALIASES) | {"f2", "f0.5"})


_SPLIT_PREFIX = re.compile(r"^(val|valid|validation|eval|dev|test)[_/.-]")


def base_name(name: str) -> str:
    """A metric name as training logs or selects by it, reduced to what it measures: no
    split prefix, no options, aliases resolved (``val_acc`` -> accuracy,
    ``valid/recall`` -> recall)."""
    n = _SPLIT_PREFIX.sub("", name.lower().split(":", 1)[0])
    return ALIASES.get(n, n)


def infer_logged_mode(name: str) -> str | None:
    """Direction of a training-logged metric where the name makes it unambiguous: a name
    containing "loss" is minimised; otherwise the base name of a built-in metric gives the
    built-in's direction (``val_acc``, ``val_accuracy``, ``eval_accuracy``, Keras'
    ``val_binary_accuracy``, ``train_auc``: max; ``val_mae``: min)."""
    if "loss" in name.lower():
        return MIN
    base = re.sub(r"^(train|training)[_/.-]", "", base_name(name))
    base = ALIASES.get(base, base)
    if base in BUILTINS:
        return BUILTINS[base][0]
    if base.endswith("accuracy"):  # categorical_accuracy, binary_accuracy, sparse_categorical_accuracy
        return MAX
    return None


def _split(text: str) -> tuple[str, dict[str, str]]:
    parts = text.split(":")
    name_parts = [p for p in parts if "=" not in p]
    options: dict[str, str] = {}
    for part in (p for p in parts if "=" in p):
        for item in part.split(","):
            key, sep, value = item.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not sep or not key or not value:
                raise MetricError(f"metric {text!r}: option {item!r} is not KEY=VALUE")
            if key in options:
                raise MetricError(f"metric {text!r}: option {key!r} given twice")
            options[key] = value
    return ":".join(p.strip() for p in name_parts), options


def _number(text: str, key: str, value: str, kind: type = float) -> float:
    try:
        return kind(value)
    except ValueError:
        raise MetricError(f"metric {text!r}: {key}={value!r} is not a number") from None


def parse_metric(
    text: str, *, mode: str | None = None, logged: Iterable[str] = (), logged_modes: Mapping[str, str] | None = None
) -> MetricSpec:
    """Parse one ``--metric`` value.

    ``mode`` is the ``--mode`` default for metrics whose direction is not built in;
    ``logged`` lists the metric names that training logged in the runs being read;
    ``logged_modes`` maps a logged name to the direction run.json ``selected_by`` gives it,
    used when neither the user nor the name says (the name wins over run.json: a
    ``val_acc`` selected with ``mode=min`` is the bug an audit exists to catch).
    Raises :class:`MetricError` with suggestions for an unknown name.
    """
    if not text or not text.strip():
        raise MetricError("empty metric name")
    # --- operating points (issue 20): recall@precision>=0.8, cost:fn=10,fp=1 (metrics/operating.py)
    from .operating import parse_operating

    operating = parse_operating(text)
    if operating is not None:
        point, class_ref, direction, shipped = operating
        name_ = "cost" if point.is_cost else "operating_point"
        return MetricSpec(
            text=text,
            name=name_,
            source="builtin",
            mode=direction,
            family="score",
            class_ref=class_ref,
            threshold=shipped,
            operating=point,
        )
    # --- end operating points
    # NOTE: slices (issue 24): worst_group(M) and M:group=NAME wrap a built-in metric
    from .groups import parse_grouped

    grouped = parse_grouped(text, mode=mode, logged=logged, logged_modes=logged_modes)
    if grouped is not None:
        return grouped
    name, opts = _split(text.strip())
    if not name:
        raise MetricError(f"metric {text!r}: no metric name before the options")
    opt_mode = opts.pop("mode", None)
    if opt_mode is not None and opt_mode.lower() not in (MAX, MIN):
        raise MetricError(f"metric {text!r}: mode must be max or min, not {opt_mode!r}")
    user_mode = (opt_mode or mode or "").lower() or None
    if user_mode is not None and user_mode not in (MAX, MIN):
        raise MetricError(f"--mode must be max or min, not {user_mode!r}")

    if ":" in name:
        head, _, rest = name.partition(":")
        if head.lower() in BUILTINS or head.lower() in ALIASES or _FBETA_SHORT.match(head.lower()):
            raise MetricError(f"metric {text!r}: option {rest!r} is not KEY=VALUE")
        if user_mode is None:
            raise MetricError(f"metric {text!r}: a custom function needs a direction: add :mode=max or :mode=min (or --mode)")
        if opts:
            raise MetricError(f"metric {text!r}: a custom function takes no options but mode, got {', '.join(sorted(opts))}")
        return MetricSpec(text=text, name=name, source="custom", mode=user_mode)

    lowered = name.lower()
    m = _FBETA_SHORT.match(lowered)
    if m and lowered != "f1":
        if "beta" in opts:
            raise MetricError(f"metric {text!r}: {name} already sets beta")
        opts["beta"] = m.group(1)
        lowered = "fbeta"
    canonical = ALIASES.get(lowered, lowered)
    if canonical in BUILTINS:
        direction, family = BUILTINS[canonical]
        if opt_mode is not None and opt_mode.lower() != direction:
            raise MetricError(f"metric {text!r}: {canonical} is always {direction}imised; mode cannot change that")
        return _builtin_spec(text, canonical, direction, family, opts)

    logged = list(logged)
    match = name if name in logged else next((n for n in logged if n.lower() == lowered), None)
    if match is not None:
        if opts:
            raise MetricError(f"metric {text!r}: a logged metric takes no options but mode, got {', '.join(sorted(opts))}")
        logged_mode = user_mode or infer_logged_mode(match) or (logged_modes or {}).get(match)
        if logged_mode is None:
            raise MetricError(
                f"metric {text!r} is logged by training but its direction is unknown: add :mode=max or :mode=min (or --mode)"
            )
        return MetricSpec(text=text, name=match, source="logged", mode=logged_mode)

    candidates = known_names() + sorted(set(logged))
    close = difflib.get_close_matches(lowered, candidates, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `ckptaudit metrics` for the list"
    raise MetricError(f"unknown metric {name!r}{hint}")


def _builtin_spec(text: str, name: str, direction: str, family: str, opts: dict[str, str]) -> MetricSpec:
    allowed = OPTIONS[name]
    unknown = sorted(set(opts) - allowed)
    if unknown:
        allowed_txt = ", ".join(sorted(allowed)) or "none"
        raise MetricError(f"metric {text!r}: {name} has no option {', '.join(unknown)} (options: {allowed_txt})")
    kwargs: dict[str, object] = {}
    if "average" in opts:
        avg = opts["average"].lower()
        if avg not in AVERAGES:
            raise MetricError(f"metric {text!r}: average must be one of {', '.join(AVERAGES)}, not {avg!r}")
        kwargs["average"] = avg
    if "class" in opts:
        if "average" in opts:
            raise MetricError(f"metric {text!r}: give class or average, not both")
        kwargs["class_ref"] = opts["class"]
    if "threshold" in opts:
        t = _number(text, "threshold", opts["threshold"])
        if not 0.0 <= t <= 1.0:
            raise MetricError(f"metric {text!r}: threshold must lie in [0, 1], not {t}")
        kwargs["threshold"] = t
    if "beta" in opts:
        b = _number(text, "beta", opts["beta"])
        # NOTE: NaN fails every comparison, so `b <= 0` alone would accept beta=nan.
        if not math.isfinite(b) or b <= 0:
            raise MetricError(f"metric {text!r}: beta must be a positive finite number, not {opts['beta']}")
        kwargs["beta"] = b
    if "k" in opts:
        k = int(_number(text, "k", opts["k"], int))
        if k < 1:
            raise MetricError(f"metric {text!r}: k must be at least 1")
        kwargs["k"] = k
    if "bins" in opts:
        bins = int(_number(text, "bins", opts["bins"], int))
        if not 1 <= bins <= MAX_ECE_BINS:
            raise MetricError(f"metric {text!r}: bins must be from 1 to {MAX_ECE_BINS:,}")
        kwargs["bins"] = bins
    return MetricSpec(text=text, name=name, source="builtin", mode=direction, family=family, options=dict(opts), **kwargs)  # type: ignore[arg-type]


#: which tasks each family of built-ins applies to
FAMILY_TASKS = {
    "label": ("binary", "multiclass", "multilabel"),
    "score": ("binary", "multiclass", "multilabel"),
    "regression": ("regression",),
}
_NOT_FOR: dict[str, tuple[str, ...]] = {
    "ece": ("multilabel",),
    "top_k_accuracy": ("binary", "multilabel"),
    "cohen_kappa": ("multilabel",),
}


def check_applies(spec: MetricSpec, task: str, output_kind: str, run_name: str) -> None:
    """Raise :class:`MetricError` when a built-in cannot be computed on a run (or, on an
    imported run not yet predicted (``task`` empty), any metric that needs predictions)."""
    if not task and spec.source != "logged":
        from ..store.runformat import NO_TASK_YET

        raise MetricError(f"{spec.text}: {NO_TASK_YET}", run_name)
    if spec.source != "builtin":
        return
    assert spec.family is not None
    if task not in FAMILY_TASKS[spec.family] or task in _NOT_FOR.get(spec.name, ()):
        raise MetricError(f"metric {spec.text!r} does not apply to {task} runs", run_name)
    if spec.family == "score" and output_kind == "label":
        raise MetricError(f"metric {spec.text!r} needs scores, but the run records hard labels (output: label)", run_name)
    if spec.operating is not None and task != "binary" and spec.class_ref is None:
        raise MetricError(f"metric {spec.text!r}: an operating point on a {task} run needs :class=NAME", run_name)
    if spec.threshold is not None and task == "multiclass" and spec.operating is None:
        raise MetricError(f"metric {spec.text!r}: threshold applies to binary and multilabel runs only", run_name)
