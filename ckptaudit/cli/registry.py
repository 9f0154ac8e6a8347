"""The commands of the ``ckptaudit`` app, listed once (no import of typer or of the commands).

Each command's module is imported when the command runs (:func:`.application.load_command`);
``ckptaudit --help`` lists them from here (:mod:`.fasthelp`).
"""

from __future__ import annotations

#: every command, in the order of ``ckptaudit --help``: name -> (module under ckptaudit.cli,
#: function, whether library errors become one line (:func:`handle_errors`), and the first
#: paragraph of its help, which ``ckptaudit --help`` lists without importing the module;
#: tests/test_cli_startup.py checks that it matches the function's docstring)
COMMANDS: dict[str, tuple[str, str, bool, str]] = {
    "rank": ("rank", "rank", True, "Re-score every checkpoint under any metric and order them best first."),
    "audit": (
        "audit",
        "audit",
        True,
        "Flag the accuracy paradox, leakage, overfitting and selection noise, with the numbers.",
    ),
    "pick": ("pick", "pick", True, "Choose the best checkpoint (per run, or --across a sweep) and record why."),
    "prune": ("prune", "prune", True, "Garbage-collect checkpoints no keep-rule protects (dry run unless --yes)."),
    "unpin": ("pick", "unpin", True, "Remove the pins of a checkpoint, so that prune may delete it again."),
    "check": (
        "check",
        "check",
        True,
        "CI gate: fail when the shipped checkpoint is not the best under the metric that matters.",
    ),
    "explain": (
        "audit",
        "explain",
        True,
        "Explain a finding code: what it means, why it matters, benign causes, what to do.",
    ),
    # --- replay (issue 23)
    "replay": ("replay", "replay", True, "Replay early-stopping and retention rules on recorded runs: stop, kept, regret."),
    # ---
    "metrics": ("metrics", "list_metrics", False, "List the built-in metrics, their direction, options and aliases."),
    "report": (
        "report",
        "report",
        True,
        "Write an HTML report: curves, the decision, findings and diagnostics, in one offline file.",
    ),
    "plot": (
        "report",
        "plot",
        True,
        "Draw the curves as a static image (PNG, SVG or PDF by the file's suffix; needs matplotlib).",
    ),
    "import": (
        "inference",
        "import_command",
        True,
        "Build a run from checkpoints a framework left on disk (weights hard-linked, never copied).",
    ),
    "predict": (
        "inference",
        "predict_command",
        True,
        "Fill val.npz (and train.npz) for every checkpoint that lacks them; resumable.",
    ),
    # combine (issue 22)
    "combine": (
        "combine",
        "combine",
        True,
        "Combine checkpoints (ensembles of saved predictions) and adopt one only when it helps beyond noise.",
    ),
}
