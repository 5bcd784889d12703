"""User-facing errors: one line, ``error: <key>=<value>: <what is wrong>; <what is allowed>``,
exit code 2, never a traceback.

Light on purpose (no torch): ``train.py`` refuses a bad setting with it before anything heavy loads.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

EXIT_CODE = 2  # as argparse: the command line (or a file it names) is wrong, nothing ran


class UserError(Exception):
    """Bad input from the user: a setting, a name, a data file.

    With ``key`` it reads ``<key>=<value>: <problem>; <allowed>``: the setting to change, the
    value it has, what is wrong with it and what would be accepted.
    """

    def __init__(self, problem: str, *, key: str | None = None, value: Any = None,
                 allowed: str | None = None) -> None:
        self.problem, self.key, self.value, self.allowed = problem, key, value, allowed
        super().__init__(str(self))

    def __str__(self) -> str:
        text = self.problem if self.key is None else f"{self.key}={show(self.value)}: {self.problem}"
        return f"{text}; {self.allowed}" if self.allowed else text

    def naming(self, key: str, value: Any) -> UserError:
        """This error attributed to the setting ``key=value`` (unless it already names one)."""
        if self.key is not None:
            return self
        return UserError(self.problem, key=key, value=value, allowed=self.allowed)


def show(value: Any) -> str:
    """A value as it is written on the command line: ``null``, ``true``, ``[0.9,0.999]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{show(v)}" for k, v in value.items()) + "}"
    return str(value)


class Refused(SystemExit):
    """The exit after a user error: status :data:`EXIT_CODE`, the message already printed."""

    def __init__(self, message: str) -> None:
        super().__init__(EXIT_CODE)
        self.message = message

    def __str__(self) -> str:
        return self.message


def fail(err: UserError | str) -> NoReturn:
    """Print the one-line ``error: ...`` message on stderr and exit with :data:`EXIT_CODE`."""
    message = f"error: {err}"
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)
    raise Refused(message)


def check_writable_folder(path: str | os.PathLike, key: str) -> None:
    """Refuse ``key=path`` unless ``path`` is, or can be created as, a folder this process can
    write into. Creates nothing: probes the deepest existing folder with a temporary entry
    (``os.access`` is not enough: root passes it on read-only file systems)."""
    target = Path(path).expanduser()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    allowed = "a folder you can write to (or create)"
    if not existing.is_dir():
        raise UserError(f"{existing} is not a folder", key=key, value=path, allowed=allowed)
    try:
        tempfile.TemporaryDirectory(dir=existing, prefix=".write-test-").cleanup()
    except OSError as err:
        raise UserError(f"cannot create anything in {existing} ({err.strerror or type(err).__name__})",
                        key=key, value=path, allowed=allowed) from None
