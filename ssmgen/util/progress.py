"""Progress lines on stderr: what a minutes-long command is doing now. One format for every
command, so that a log reads the same whichever part of ssmgen wrote it."""

from __future__ import annotations

import sys

__all__ = ["say", "warn"]


def say(message: str) -> None:
    """Print ``[ssmgen] message`` on stderr at once (not buffered behind later output)."""
    print(f"[ssmgen] {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Print ``ssmgen: warning: message`` on stderr: something the user asked for happened,
    but not quite as written (a value saturated, a pole was moved)."""
    print(f"ssmgen: warning: {message}", file=sys.stderr, flush=True)
