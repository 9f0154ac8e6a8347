"""Hugging Face Trainer: a callback that records every evaluation into a ckptaudit run.

    from ckptaudit.integrations.hf import CkptauditTrainerCallback
    rec = CkptauditTrainerCallback("runs/exp1", task="multiclass", output="logit")
    trainer = Trainer(..., compute_metrics=rec.wrap(compute_metrics), callbacks=[rec])

Predictions come from the evaluation the Trainer already runs: ``rec.wrap(fn)`` returns a
``compute_metrics`` that keeps the ``EvalPrediction`` (already gathered across processes
by the Trainer) and then calls ``fn`` (or returns no extra metric when ``fn`` is None).
There is no second inference pass, so training's random state is untouched.

Per evaluation it writes ``checkpoints/epoch-NNNN`` (``eval_strategy="epoch"``; NNNN is the
epoch the Trainer logs, 1 after the first epoch) or ``step-NNNNNNN`` (other strategies):
``val.npz``, ``meta.json`` (the evaluation's metrics, the last training ``loss``, epoch and
``global_step``), and the model's own ``model.safetensors`` + ``config.json`` written with
``save_pretrained``, so a picked checkpoint reloads with ``from_pretrained``. These are the
run's own copies: ``save_total_limit`` rotation of the Trainer's ``checkpoint-N`` folders
cannot delete a recorded epoch.

run.json ``selected_by`` is ``metric_for_best_model`` (with the Trainer's ``eval_`` prefix)
and ``greater_is_better``; ``chosen`` is the evaluation at ``best_global_step``
(``best_model_checkpoint``), set when training ends. Only the main process writes.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from ..errors import UsageError
from ..store.recorder import Recorder, hash_rows, to_numpy


class CkptauditTrainerCallback(TrainerCallback):
    """Record each evaluation of ``Trainer.train`` into the run at ``path``.

    ``val_ids`` (one per evaluation row, in the eval dataset's order) and ``val_inputs``
    (hashed per row into ``input_hash``) are stored with every checkpoint; with
    ``TrainingArguments(include_for_metrics=["inputs"])`` the inputs the Trainer passes to
    ``compute_metrics`` are hashed instead. ``weights=False`` records predictions only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        task: str,
        output: str,
        classes: Sequence[str] | None = None,
        positive_class: int = 1,
        val_ids: Any = None,
        val_inputs: Any = None,
        weights: bool = True,
        resume: bool = False,
        fresh: bool = False,
    ) -> None:
        Recorder.existing_run(path, resume=resume, fresh=fresh)  # fail before training, read-only on every rank
        self.path = Path(path)
        self.options: dict[str, Any] = dict(
            task=task, output=output, classes=classes, positive_class=positive_class, resume=resume, fresh=fresh
        )
        self.val_ids = None if val_ids is None else to_numpy(val_ids)
        self.val_hashes = None if val_inputs is None else hash_rows(val_inputs)
        self.weights = weights
        self.recorder: Recorder | None = None
        self._captured: dict[str, np.ndarray] | None = None
        self._train_loss: float | None = None
        self._wrapped = False

    def wrap(self, compute_metrics: Callable[[Any], dict[str, float]] | None = None) -> Callable[[Any], dict[str, float]]:
        """A ``compute_metrics`` for the Trainer that keeps the predictions, then calls yours."""
        if compute_metrics is not None and not callable(compute_metrics):
            raise UsageError(f"wrap() takes your compute_metrics function or None, not {compute_metrics!r}")
        self._wrapped = True

        def capture(eval_pred: Any) -> dict[str, float]:
            predictions = eval_pred.predictions
            if isinstance(predictions, (tuple, list)):
                predictions = predictions[0]  # logits first; hidden states or attentions follow
            arrays = {"target": to_numpy(eval_pred.label_ids), "output": to_numpy(predictions)}
            inputs = getattr(eval_pred, "inputs", None)
            if inputs is not None and not isinstance(inputs, (tuple, list, dict)):
                arrays["input_hash"] = hash_rows(inputs)
            self._captured = arrays
            return {} if compute_metrics is None else compute_metrics(eval_pred)

        return capture

    # -- TrainerCallback ---------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._wrapped:
            raise UsageError("give the Trainer compute_metrics=callback.wrap(your_compute_metrics) so predictions reach the run")
        metric, mode = selection(args)
        if state.is_world_process_zero:
            self.recorder = Recorder(self.path, **self.options, selected_by=metric, mode=mode)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self._train_loss = float(logs["loss"])  # the training loss, logged before the evaluation it precedes

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        arrays, self._captured = self._captured, None
        if arrays is None or not state.is_world_process_zero or self.recorder is None:
            return
        if not _training(state):
            return  # an evaluate() call outside train(): not an epoch of this run
        logged = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self._train_loss is not None:
            logged["loss"] = self._train_loss
        per_epoch = str(getattr(args, "eval_strategy", "")).lower().endswith("epoch")
        epoch = round(state.epoch) if per_epoch else math.floor(state.epoch + 1e-9)
        name = f"epoch-{epoch:04d}" if per_epoch else f"step-{state.global_step:07d}"
        model = kwargs.get("model")
        write = None
        if self.weights and model is not None:
            # NOTE: safe_serialization is the default; config.json comes with it.
            def write(folder: Path) -> None:
                model.save_pretrained(folder)

        self.recorder.save(
            epoch,
            val_target=arrays["target"],
            val_output=arrays["output"],
            val_ids=self.val_ids,
            val_input_hash=arrays.get("input_hash", self.val_hashes),
            logged=logged,
            step=state.global_step,
            name=name,
            write=write,
        )

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.recorder is None:
            return
        step = getattr(state, "best_global_step", None)
        if step is None and state.best_model_checkpoint:
            found = re.search(r"checkpoint-(\d+)$", str(state.best_model_checkpoint).rstrip("/"))
            step = int(found.group(1)) if found else None
        if step is None:
            return
        from ..store.reader import read_run

        match = [c.name for c in read_run(self.path).checkpoints if c.step == step]
        if match:
            self.recorder.choose(match[-1])


def selection(args: Any) -> tuple[str | None, str | None]:
    """run.json selected_by from TrainingArguments, as the Trainer itself reads them."""
    metric = getattr(args, "metric_for_best_model", None)
    if not metric:
        return None, None
    name = metric if metric.startswith("eval_") else f"eval_{metric}"
    greater = getattr(args, "greater_is_better", None)
    if greater is None:
        greater = not metric.endswith("loss")
    return name, "max" if greater else "min"


def _training(state: Any) -> bool:
    return bool(getattr(state, "max_steps", 0)) and state.global_step > 0
