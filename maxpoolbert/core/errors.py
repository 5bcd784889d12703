"""User-facing errors: one line, ``error: <key>=<value>: <what is wrong>; <what is allowed>``,
exit code 2, never a traceback.

Light on purpose (no torch): ``train.py`` refuses a bad setting with it before anything heavy loads.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
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


def _is_misconfiguration(err: BaseException) -> bool:
    """Whether ``err`` is Lightning's ``MisconfigurationException``, checked by type without
    importing Lightning (loaded or not: none can have been raised without it)."""
    module = sys.modules.get("lightning.fabric.utilities.exceptions")
    cls = getattr(module, "MisconfigurationException", None)
    return isinstance(cls, type) and isinstance(err, cls)


def user_error(err: BaseException | None) -> UserError | None:
    """The UserError behind ``err``, also when another error wraps it (Hydra's instantiate); a
    setting Lightning refuses while it runs (its ``MisconfigurationException``, e.g.
    ``trainer.limit_train_batches=0.01`` of one batch) is one too, in Lightning's own first line."""
    while err is not None:
        if isinstance(err, UserError):
            return err
        if _is_misconfiguration(err) and str(err).strip():
            return UserError(str(err).strip().splitlines()[0])
        err = err.__cause__
    return None


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


NAME_MAX = 255  # the longest file or folder name most filesystems take (bytes), when they do not say


def check_path_names(path: str | os.PathLike, key: str, value: Any = None, allowed: str | None = None) -> None:
    """Refuse ``key=value`` when a folder or file name in ``path`` is longer than its filesystem
    takes (``File name too long`` from the first ``mkdir`` or ``stat``, as a traceback)."""
    target = Path(path).expanduser()
    existing = target.anchor or "."
    for part in target.parts:
        try:
            limit = os.pathconf(existing, "PC_NAME_MAX")
        except (OSError, ValueError):
            limit = NAME_MAX
        if len(os.fsencode(part)) > limit:
            raise UserError(f"the name {part[:24]}... is {len(os.fsencode(part))} bytes long, more than the {limit} "
                            "its filesystem takes", key=key, value=path if value is None else value,
                            allowed=allowed or "a path whose every folder name is shorter")
        candidate = os.path.join(existing, part)
        if os.path.isdir(candidate):
            existing = candidate


def check_writable_folder(path: str | os.PathLike, key: str) -> None:
    """Refuse ``key=path`` unless ``path`` is, or can be created as, a folder this process can
    write into. Creates nothing: probes the deepest existing folder with a temporary entry
    (``os.access`` is not enough: root passes it on read-only file systems)."""
    check_path_names(path, key)
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


# ---------------------------------------------------------------------------- a write that failed
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # full disk, spent quota, read-only filesystem


class WriteFailed(UserError):
    """A file could not be written because of where it goes (:data:`STORAGE_ERRNOS`): one line
    naming the file and the free space on its filesystem. ``allowed`` says what to do; a run adds
    what relaunching it does (:meth:`relaunch`)."""

    def __init__(self, path: str | os.PathLike, code: int, allowed: str | None = None, free: str | None = None) -> None:
        self.path, self.code = Path(path), code
        self.free = free or free_space(self.path)  # once: after the failed write's temporary file is gone
        problem = (f"cannot write {self.path}: {os.strerror(code)} ({errno.errorcode.get(code, code)}); "
                   f"{self.free} free on its filesystem")
        super().__init__(problem, allowed=allowed or self.advice)

    @property
    def advice(self) -> str:
        return "make the filesystem writable" if self.code == errno.EROFS else "free some space"

    def relaunch(self, what_it_does: str, command: str | None = None) -> WriteFailed:
        """This error, saying what relaunching does (``resumes from ...``): with ``command``, the
        command that relaunches it; else the same command."""
        if command is None:
            return WriteFailed(self.path, self.code,
                               f"{self.advice}, then relaunch the same command: it {what_it_does}", self.free)
        return WriteFailed(self.path, self.code, f"{self.advice}, then relaunch: it {what_it_does}: {command}",
                           self.free)


def write_failure(path: str | os.PathLike, err: BaseException) -> WriteFailed | None:
    """The :class:`WriteFailed` behind ``err`` (raised while writing ``path``; call it once the
    write's temporary file is removed, so that the free space counts it out), or None when it is
    another error. The cause may be wrapped: ``torch.save`` raises ``RuntimeError("unexpected
    pos ...")`` with the ``OSError`` as its context; safetensors' writer says ``(os error 28)``."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, WriteFailed):
            return err
        if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
            return WriteFailed(path, err.errno)
        found = re.search(r"os error (\d+)", str(err))
        if found and int(found.group(1)) in STORAGE_ERRNOS:
            return WriteFailed(path, int(found.group(1)))
        err = err.__cause__ or err.__context__
    return None


def free_space(path: str | os.PathLike) -> str:
    """The free space on the filesystem of ``path`` (or of its nearest existing folder), for people."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = float(shutil.disk_usage(folder).free)
    except OSError:
        return "unknown space"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if free < 1000 or unit == "TB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1000
    return f"{free:.1f} TB"
