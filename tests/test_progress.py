"""The progress bar draws on a terminal and stays silent otherwise."""

from __future__ import annotations

import io

from ckptaudit.progress import progress_bar


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_when_not_a_terminal():
    assert progress_bar("x", io.StringIO()) is None


def test_draws_on_a_terminal_and_clears_at_the_end():
    out = FakeTty()
    update = progress_bar("scoring", out, min_seconds=0)
    for i in range(1, 11):
        update(i, 10)
    text = out.getvalue()
    assert "scoring [" in text and "10/10" in text
    assert text.endswith("\r")
