"""Turning checkpoints that already exist into a ckptaudit run, and weights into predictions.

- :mod:`.loading`: safe weight loading (``torch.load(weights_only=True)``, safetensors,
  ``.keras`` zip members read as data); anything that needs code is refused unless the
  caller passes ``trust_pickle=True``.
- :mod:`.importers`: ``ckptaudit import FRAMEWORK SRC RUN`` for Lightning, Hugging Face,
  Keras and plain weight files; weights are hard-linked (or referenced), never copied,
  moved or deleted. It writes the run; :mod:`.source` holds what the framework readers
  share, and :mod:`.from_lightning`, :mod:`.from_hf`, :mod:`.from_files` (Keras and plain
  files) read one framework each.
- :mod:`.chosen`: what training kept (``--chosen best_model.pth``, or the copy a glob
  caught), matched to its checkpoint by tensor content.
- :mod:`.logs`: per-epoch logged metrics from TensorBoard event files and W&B runs.
- :mod:`.predict`: ``ckptaudit predict``: fills ``val.npz``/``train.npz`` of every
  checkpoint that lacks them, resumably, each output checked against the run's task.
  :mod:`.predictor` loads the user's model and data and runs checkpoints through the model;
  :mod:`.prediction_files` finds weights and reads/writes the ``SPLIT.npz`` files.
- :mod:`.tasks`: the task of an imported run, read from the data at ``predict``.
- :mod:`.engines`: where the checkpoints are predicted: in this process, a local process
  pool (``--workers N``) or a Ray cluster (``--engine ray``); it never imports
  :mod:`.predict`, which passes it the predictor class and a result callback.

Nothing here is imported by ``import ckptaudit`` or the CLI at start-up; torch and the
frameworks are imported inside the functions that need them.
"""
