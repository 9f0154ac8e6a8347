"""``python -m ckptaudit``: the same as the ``ckptaudit`` command."""

from .cli import run

run()
