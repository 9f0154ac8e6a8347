"""Weight averages and greedy soups, searched and assessed like prediction ensembles.

:class:`AverageSearcher` has the interface of :class:`.adoption.Searcher`, so that
:func:`.adoption.assess` re-runs **its** whole search on in-bag rows too. Its families:

- ``avg-last-k``: the uniform weight average of the last k checkpoints (best k);
- ``avg-top-k``: of the k best single checkpoints (best k, the order re-made in-bag);
- ``soup``: the greedy soup (Wortsman et al. 2022): checkpoints in order of their value,
  each added when the soup's value does not get worse.

Every candidate average is built streamed (:func:`.averaging.average_files`: one checkpoint
and the running sum in memory), its BatchNorm statistics refreshed on ``train_data`` when
the model has them and training rows are given, and predicted on the validation rows by the
inference engine's :class:`~ckptaudit.inference.predictor.Predictor` (weights loaded as data
only). Predictions are cached by member set: resamples that choose the same average predict
it once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..metrics.prepared import prepare
from ..metrics.spec import MetricSpec
from .adoption import Found, SearchResult, SingleScores, k_values
from .averaging import average_files, has_batchnorm, refresh_batchnorm
from .ensembles import Members
from .greedy import better
from .rows import row_values

AVERAGE_FAMILIES = ("avg-last-k", "avg-top-k", "soup")


class AverageSearcher(SingleScores):
    """The search over weight averages of one run's checkpoints (see the module)."""

    def __init__(
        self,
        members: Members,
        spec: MetricSpec,
        model: Any,
        data: Any,
        *,
        train_data: Any = None,
        families: tuple[str, ...] = AVERAGE_FAMILIES,
        device: str = "cpu",
        batch_size: int = 1024,
        trust_pickle: bool = False,
        refresh_bn: bool = True,
    ) -> None:
        from ..inference.loading import find_weights
        from ..inference.predictor import Predictor, _data

        keep = [i for i, c in enumerate(members.checkpoints) if find_weights(c.path) is not None]
        notes = list(members.notes) + [
            f"{c.name}: no weights file, not a candidate" for i, c in enumerate(members.checkpoints) if i not in keep
        ]
        if len(keep) < 2:
            raise UsageError(
                f"weight averaging needs at least 2 checkpoints with weights, the run has {len(keep)}", members.run.path
            )
        self.members = Members(
            members.run, tuple(members.checkpoints[i] for i in keep), members.probs[keep], members.y, members.target,
            members.ids, members.input_hash, members.eps, tuple(notes),
        )  # fmt: skip
        self.files = [find_weights(c.path) for c in self.members.checkpoints]
        self.spec, self.families, self.maximize = spec, families, spec.maximize
        self.data = _data(data, "--data")
        if self.data.n != members.y.shape[0] or not np.array_equal(np.asarray(self.data.target), members.target):
            raise UsageError("--data is not the run's validation rows (its targets differ from val.npz)")
        self.train = None if train_data is None else _data(train_data, "--train-data")
        self.predictor = Predictor(model, device=device, batch_size=batch_size, trust_pickle=trust_pickle)
        self.trust_pickle = trust_pickle
        self.batchnorm = has_batchnorm(self.predictor.model)
        self.refresh = bool(refresh_bn and self.batchnorm and self.train is not None)
        if self.batchnorm and not self.refresh:
            why = "no --train-data" if self.train is None else "refresh turned off"
            self.members = _with_note(
                self.members, f"BatchNorm statistics NOT refreshed ({why}): the averages use averaged running statistics"
            )
        task, y, eps = members.run.task, members.y, members.eps
        self.rows_fn = lambda p: row_values(task, spec, y, p, eps)
        self.single_rows = np.stack([self.rows_fn(p.astype(np.float64)) for p in self.members.probs])
        self.ks = k_values(len(self.files))
        self._cache: dict[tuple[int, ...], np.ndarray] = {}
        self.predicted = 0  #: averages predicted so far (each a streamed average and one inference pass)

    # ------------------------------------------------------------------ building averages
    def state_of(self, members: list[int]) -> dict[str, Any]:
        """The averaged (and, when asked, BatchNorm-refreshed) state dict of ``members``."""
        from ..inference.predictor import _align_keys

        counts = np.bincount(np.asarray(members, dtype=np.int64), minlength=len(self.files))
        used = np.flatnonzero(counts)
        state = average_files([self.files[i] for i in used], [float(counts[i]) for i in used], trust_pickle=self.trust_pickle)
        if not self.refresh:
            return state
        model = self.predictor.model
        model.load_state_dict(_align_keys(state, set(model.state_dict())), strict=True)
        assert self.train is not None
        refresh_batchnorm(model, self.train.inputs, self.predictor.batch_size, self.predictor.device)
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def predict_state(self, state: dict[str, Any]) -> np.ndarray:
        """Probabilities (regression: values) of ``state`` on the validation rows."""
        from ..inference.predictor import _align_keys

        model = self.predictor.model
        model.load_state_dict(_align_keys(state, set(model.state_dict())), strict=True)
        out = self.predictor.run(self.data)
        run = self.members.run
        prep = prepare(run.task, run.output, self.members.target, out, run.positive_class, run.num_classes)
        return prep.proba64 if run.task != "regression" else np.asarray(prep.proba, dtype=np.float64)

    def rows_of(self, members: list[int]) -> np.ndarray:
        """Per-row metric values of the average of ``members`` (cached by member set)."""
        key = tuple(np.bincount(np.asarray(members, dtype=np.int64), minlength=len(self.files)).tolist())
        if key not in self._cache:
            self._cache[key] = self.rows_fn(self.predict_state(self.state_of(members)))
            self.predicted += 1
        return self._cache[key]

    # ------------------------------------------------------------------ the search
    def search(self, weights: np.ndarray) -> SearchResult:
        """Run the whole search with rows weighted by ``weights`` (N,)."""
        total, singles, result = self._start(weights)
        k = len(self.files)
        order = [int(i) for i in np.argsort(-singles if self.maximize else singles, kind="stable")]

        def found(family: str, label: str, members: list[int]) -> Found:
            rows = self.rows_of(members)
            return Found(family, label, members, rows, float(rows @ weights / total))

        for family, pick in (("avg-last-k", lambda n: list(range(k - n, k))), ("avg-top-k", lambda n: order[:n])):
            if family not in self.families:
                continue
            best: Found | None = None
            for n in self.ks:
                f = found(family, f"{family[:-2]}-{n}", pick(n))
                if best is None or better(f.value, best.value, self.maximize):
                    best = f
            if best is not None:
                result.found[family] = best
        if "soup" in self.families:
            soup = [order[0]]
            current = found("soup", "soup", soup)
            for j in order[1:]:
                trial = found("soup", "soup", soup + [j])
                # NOTE: Wortsman et al.: an ingredient stays when the soup does not get worse
                if not better(current.value, trial.value, self.maximize):
                    soup, current = soup + [j], trial
            if len(soup) > 1:
                result.found["soup"] = current
        for family in self.families:
            f = result.found.get(family)
            if f is not None and (result.chosen is None or better(f.value, result.found[result.chosen].value, self.maximize)):
                result.chosen = family
        return result


def _with_note(members: Members, note: str) -> Members:
    from dataclasses import replace

    return replace(members, notes=(*members.notes, note))


def save_state(state: dict[str, Any], path: Path) -> None:
    """Write an averaged state dict as a plain torch file of tensors (loadable with
    ``weights_only=True``)."""
    import torch

    torch.save({k: v.contiguous() for k, v in state.items()}, path)
