"""``python -m ckptaudit.cli``: the same as the ``ckptaudit`` command."""

from . import run

run()
