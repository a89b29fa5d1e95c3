"""The errors caffegen reports to users: each carries one line that says what and where.

The CLI prints ``caffegen: error: <message>`` and exits with ``exit_code``:
2 for bad input (a typo, a bad number, a missing file), 1 for a failure at run time.
"""
from __future__ import annotations


class CaffegenError(Exception):
    """Base class: ``str(exc)`` is the one line shown to the user."""

    exit_code = 1


class InputError(CaffegenError, ValueError):
    """The user's input is wrong (bad option value, missing file, unreadable spec). Exit 2."""

    exit_code = 2


class CaffeNotFound(CaffegenError):
    """No usable Caffe: the message names the fix (``make caffe`` or ``CAFFE_ROOT``)."""

    exit_code = 1


class ValidationError(CaffegenError):
    """A rendered file failed caffe's schema or pycaffe's shape checks. Exit 2 (it came from the input)."""

    exit_code = 2


class Interrupted(CaffegenError):
    """The user stopped the command (Ctrl-C, SIGTERM, SIGHUP) after each caffe saved what it had. Exit 128 + the
    signal's number (130, 143, 129), as shells report it."""

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)
