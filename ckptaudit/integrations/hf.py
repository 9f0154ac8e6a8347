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

Options: ``output_key`` picks the predictions when the model returns several outputs (a
position in the ``EvalPrediction`` tuple, or an output name such as ``"logits"``, resolved
from the model's own output on the first evaluation); ``predict(eval_pred)`` returns
``(target, output[, ids])`` from the ``EvalPrediction`` for full control. With
``batch_eval_metrics=True`` the batches are kept until the last one. ``train_sample=N``
scores N fixed training rows (seeded) at every evaluation, in eval mode, and records them as
``train.npz`` with their input hashes (``model.main_input_name``) for the leakage audit.
Evaluations outside ``train()`` (``trainer.evaluate()`` after training) are not checkpoints
of the run and are not recorded; a ``resume_from_checkpoint`` before the last recorded
evaluation fails at ``on_train_begin``, before any training.
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

from ..auditing.live import check_on_finding
from ..errors import UsageError
from ..store.recorder import Recorder, hash_rows, to_numpy
from ..store.remotewrite import run_location
from . import LoggedCheck, Resumed, as_array, check_train_sample, fit_shapes, forked_rng, sample_rows


class CkptauditTrainerCallback(TrainerCallback):
    """Record each evaluation of ``Trainer.train`` into the run at ``path``.

    ``val_ids`` (one per evaluation row, in the eval dataset's order) and ``val_inputs``
    (hashed per row into ``input_hash``) are stored with every checkpoint; with
    ``TrainingArguments(include_for_metrics=["inputs"])`` the inputs the Trainer passes to
    ``compute_metrics`` are hashed instead. ``weights=False`` records predictions only.
    ``val_groups`` (one group label per evaluation row, in the eval dataset's order, or a
    mapping of column name to such arrays) is stored as the ``group`` column(s) (docs/slices.md).
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
        output_key: str | int | None = None,
        predict: Callable[[Any], tuple[Any, ...]] | None = None,
        train_sample: int | None = None,
        train_ids: Any = None,
        seed: int = 0,
        check_logged: bool = True,
        live_audit: bool = True,
        on_finding: str = "warn",
        resume: bool = False,
        fresh: bool = False,
        val_groups: Any = None,
    ) -> None:
        if predict is not None and not callable(predict):
            raise UsageError(f"predict must be a function (eval_pred) -> (target, output[, ids]), not {predict!r}")
        if output_key is not None and (isinstance(output_key, bool) or not isinstance(output_key, (str, int))):
            raise UsageError(f"output_key must be an output name or a position, not {output_key!r}")
        existing = Recorder.existing_run(path, resume=resume, fresh=fresh)  # fail before training, read-only on every rank
        self.resumed = Resumed(None if fresh else existing)
        self.path = run_location(path)  # a URL stays a URL (docs/storage.md)
        self.task = task
        self.options: dict[str, Any] = dict(
            task=task, output=output, classes=classes, positive_class=positive_class, resume=resume, fresh=fresh
        )
        # the live audit (ckptaudit/auditing/live.py), reported as this framework reports
        self.options.update(live_audit=live_audit, on_finding=check_on_finding(on_finding), report=_log_warning)
        self.val_ids = None if val_ids is None else to_numpy(val_ids)
        self.val_hashes = None if val_inputs is None else hash_rows(val_inputs)
        self.val_groups = val_groups  # slices (issue 24): the eval rows' group column(s)
        self.weights = weights
        self.output_key = output_key
        self.predict = predict
        self.train_sample = check_train_sample(train_sample)
        self.train_ids = None if train_ids is None else to_numpy(train_ids)
        self.seed = seed
        self.logged_check = LoggedCheck(path, enabled=check_logged)
        self.recorder: Recorder | None = None
        self._captured: dict[str, np.ndarray] | None = None
        self._batches: list[dict[str, np.ndarray]] = []
        self._train_loss: float | None = None
        self._wrapped = False
        self._in_train = False
        self._output_names: list[str] | None = None
        self._hook: Any = None

    def wrap(self, compute_metrics: Callable[..., dict[str, float]] | None = None) -> Callable[..., dict[str, float]]:
        """A ``compute_metrics`` for the Trainer that keeps the predictions, then calls yours.

        It takes the Trainer's ``compute_result`` argument (``batch_eval_metrics=True``: called
        per batch, the predictions are kept until the last) and passes it on to yours."""
        if compute_metrics is not None and not callable(compute_metrics):
            raise UsageError(f"wrap() takes your compute_metrics function or None, not {compute_metrics!r}")
        self._wrapped = True

        def capture(eval_pred: Any, compute_result: bool | None = None) -> dict[str, float]:
            arrays = self._arrays(eval_pred)
            if compute_result is None:
                self._captured = arrays
            else:
                self._batches.append(arrays)
                if compute_result:
                    n = len(self._batches)
                    self._captured = {
                        k: np.concatenate([b[k] for b in self._batches])
                        for k in self._batches[0]
                        if all(k in b for b in self._batches) and n
                    }
                    self._batches = []
            if compute_metrics is None:
                return {}
            if compute_result is None:
                return compute_metrics(eval_pred)
            return compute_metrics(eval_pred, compute_result=compute_result)

        return capture

    def _arrays(self, eval_pred: Any) -> dict[str, np.ndarray]:
        if self.predict is not None:
            got = self.predict(eval_pred)
            arrays = {"target": as_array(got[0]), "output": as_array(got[1])}
            if len(got) > 2 and got[2] is not None:
                arrays["id"] = as_array(got[2])
            return arrays
        predictions = eval_pred.predictions
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[self._position(len(predictions))]
        elif isinstance(self.output_key, int) and self.output_key not in (0, -1):
            raise UsageError(f"output_key={self.output_key!r}: the evaluation has one output")
        arrays = {"target": as_array(eval_pred.label_ids), "output": as_array(predictions)}
        inputs = getattr(eval_pred, "inputs", None)
        if inputs is not None and not isinstance(inputs, (tuple, list, dict)):
            arrays["input_hash"] = hash_rows(inputs)
        return arrays

    def _position(self, count: int) -> int:
        """Which of the Trainer's prediction tuple to record: logits first, unless output_key says."""
        key = self.output_key
        if key is None:
            return 0  # logits first; hidden states or attentions follow
        if isinstance(key, int):
            if not -count <= key < count:
                raise UsageError(f"output_key={key} is not a position among the {count} outputs of the evaluation")
            return key
        names = self._output_names
        if names is None:
            raise UsageError(f"output_key={key!r}: the model's output names were not seen (is the model a torch module?)")
        if key not in names:
            raise UsageError(f"output_key={key!r} is not among the evaluation's outputs {names}")
        return names.index(key)

    # -- TrainerCallback ---------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._wrapped:
            raise UsageError("give the Trainer compute_metrics=callback.wrap(your_compute_metrics) so predictions reach the run")
        # a resume_from_checkpoint before the last recorded evaluation fails here, before any training
        self.resumed.check_start(state.global_step, "the Trainer's global_step")
        metric, mode = selection(args)
        if state.is_world_process_zero and self.recorder is None:
            self.recorder = Recorder(self.path, **self.options, selected_by=metric, mode=mode)
        self._in_train = True
        model = kwargs.get("model")
        if (
            isinstance(self.output_key, str)
            and model is not None
            and self._hook is None
            and hasattr(model, "register_forward_hook")
        ):
            self._hook = model.register_forward_hook(self._learn_names)

    def _learn_names(self, module: Any, inputs: Any, output: Any) -> None:
        """The names of the model's outputs, in the order the Trainer keeps them (no loss, no
        ignored keys), seen on a forward call while evaluating."""
        if isinstance(output, dict) and not module.training:
            ignore = set(getattr(getattr(module, "config", None), "keys_to_ignore_at_inference", None) or [])
            self._output_names = [k for k in output if k != "loss" and k not in ignore]

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self._train_loss = float(logs["loss"])  # the training loss, logged before the evaluation it precedes

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        arrays, self._captured = self._captured, None
        if arrays is None or not state.is_world_process_zero or self.recorder is None:
            return
        if not self._in_train or not _training(state):
            return  # an evaluate() call outside train(): not a checkpoint of this run
        logged = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self._train_loss is not None:
            logged["loss"] = self._train_loss
        per_epoch = str(getattr(args, "eval_strategy", "")).lower().endswith("epoch")
        epoch = round(state.epoch) if per_epoch else math.floor(state.epoch + 1e-9)
        name = f"epoch-{epoch:04d}" if per_epoch else f"step-{state.global_step:07d}"
        target, output = fit_shapes(self.task, arrays["target"], arrays["output"])
        if self.resumed.already(name, target, output):
            return
        self.logged_check(name, logged, target, output)
        model = kwargs.get("model")
        write = None
        if self.weights and model is not None:
            # NOTE: safe_serialization is the default; config.json comes with it.
            def write(folder: Path) -> None:
                model.save_pretrained(folder)

        extra: dict[str, Any] = {}
        if self.train_sample and model is not None:
            train = self._train_rows(args, model, kwargs.get("train_dataloader"))
            t_target, t_output = fit_shapes(self.task, train["target"], train["output"])
            extra = dict(
                train_target=t_target, train_output=t_output, train_ids=train.get("id"), train_input_hash=train.get("input_hash")
            )
        self.recorder.save(
            epoch,
            val_target=target,
            val_output=output,
            val_ids=arrays.get("id", self.val_ids),
            val_input_hash=arrays.get("input_hash", self.val_hashes),
            val_groups=self.val_groups,
            logged=logged,
            step=state.global_step,
            name=name,
            write=write,
            **extra,
        )

    def _train_rows(self, args: Any, model: Any, loader: Any) -> dict[str, np.ndarray]:
        """``train_sample`` fixed rows of the training set, predicted in eval mode (RNG forked,
        the run's bf16/fp16 autocast); batches are collated by hand, so no DataLoader draws."""
        import torch

        dataset = getattr(loader, "dataset", None)
        if dataset is None or not hasattr(dataset, "__len__"):
            raise UsageError("train_sample= needs the Trainer's train_dataset (a dataset with a length)")
        assert self.train_sample is not None
        rows = sample_rows(len(dataset), self.train_sample, self.seed)
        collate = loader.collate_fn
        size = getattr(args, "per_device_eval_batch_size", None) or 64
        labels = (getattr(args, "label_names", None) or ["labels"])[0]
        main = getattr(model, "main_input_name", "input_ids")
        device = getattr(model, "device", torch.device("cpu"))
        dtype = torch.bfloat16 if getattr(args, "bf16", False) else torch.float16 if getattr(args, "fp16", False) else None
        parts: dict[str, list[np.ndarray]] = {"target": [], "output": [], "input_hash": []}
        was_training = model.training
        model.eval()
        try:
            with forked_rng(), torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                for start in range(0, len(rows), size):
                    batch = collate([dataset[int(i)] for i in rows[start : start + size]])
                    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
                    out = model(**batch)
                    if isinstance(out, dict):
                        names = [k for k in out if k != "loss"]
                        key = self.output_key if isinstance(self.output_key, str) else names[self.output_key or 0]
                        out = out[key]
                    elif isinstance(out, (tuple, list)):
                        out = out[1 if batch.get(labels) is not None else 0]
                    parts["output"].append(as_array(out))
                    parts["target"].append(as_array(batch[labels]))
                    if main in batch:
                        parts["input_hash"].append(hash_rows(batch[main]))
        finally:
            model.train(was_training)
        got = {k: np.concatenate(v) for k, v in parts.items() if v}
        if self.train_ids is not None:
            got["id"] = self.train_ids[rows]
        return got

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._in_train = False
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if not state.is_world_process_zero or self.recorder is None:
            return
        step = getattr(state, "best_global_step", None)
        if step is None and state.best_model_checkpoint:
            found = re.search(r"checkpoint-(\d+)$", str(state.best_model_checkpoint).rstrip("/"))
            step = int(found.group(1)) if found else None
        if step is None:
            return
        from ..store.reader import read_run

        match = [c.name for c in read_run(self.recorder.path).checkpoints if c.step == step]
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


def _log_warning(message: str) -> None:
    """A live-audit finding, as the Trainer reports: a logged warning."""
    import logging

    logging.getLogger(__name__).warning(message)
