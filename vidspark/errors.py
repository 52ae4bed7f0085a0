"""The project's one error base class: failures the user can act on.

Every vidspark error (bad configuration, a held lock, missing prerequisites, unusable labels or
weights, a model that cannot be trained or used, a file that is not a usable video) derives from
``VidsparkError``. Entry points catch it once and print its message as one line (no traceback)
and exit non-zero; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class VidsparkError(Exception):
    """A failure whose message tells the user what to do."""


class PrerequisiteError(VidsparkError):
    """A job was run before what it needs exists (no champion, no frames, no videos)."""


def one_line(message: str) -> str:
    """The message on one line: later lines joined with '; '."""
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def user_error(exc: BaseException) -> str | None:
    """The one line to print for ``exc`` when it is the user's to fix, else None (a bug)."""
    if isinstance(exc, (VidsparkError, FileNotFoundError)):
        return one_line(str(exc))
    return None
