"""Run by tests/test_integration_hf.py under `accelerate launch --num_processes 2 --cpu`:
train the tiny model with the callback in two processes and record into argv[1]."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from test_integration_hf import CkptauditTrainerCallback, train, wine  # noqa: E402

if __name__ == "__main__":
    root = Path(sys.argv[1])
    (_, _), (xv, yv) = wine()
    cb = CkptauditTrainerCallback(
        root / "run", task="multiclass", output="logit", val_ids=np.arange(len(yv)) + 500, val_inputs=xv
    )
    trainer = train(root, cb, epochs=2)
    if trainer.is_world_process_zero():
        (root / "world_size").write_text(str(trainer.args.world_size))
        (root / "best_step").write_text(str(trainer.state.best_global_step))
