"""Gate cases shared by the in-process tests (test_check.py) and the installed console
script's (test_cli_exit_codes.py), so that both judge the same list."""

#: (fixture run, check's arguments, the one rule that fails): each rule failing alone
ONE_RULE_FAILURES = [
    ("fraud", ["--metric", "accuracy", "--chosen", "epoch-0008", "--fail-on", "never", "--require-best"], "chosen-is-best"),
    ("digits", ["--metric", "accuracy"], "selected-by-matches"),
    ("digits", ["--metric", "val_loss", "--max-value", "0.1"], "min-value"),
    ("leak-ids", ["--metric", "val_loss"], "no-audit-findings"),
]
