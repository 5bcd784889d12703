"""Atomic file IO: a file written whole or not at all (a temporary file beside it, flushed to disk,
renamed over it), with the permissions of new files; a file that cannot be used set aside.

Every writer of run folders, checkpoints, caches and exported folders goes through these; a write
that fails for want of space is one line (:class:`~maxpoolbert.core.errors.WriteFailed`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maxpoolbert.core.errors import write_failure

CORRUPT = ".corrupt"  # the suffix of a file that cannot be used, set aside (set_aside)


def tmp_path(path: Path) -> Path:
    """The temporary file beside ``path`` that an atomic write goes through."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: Path, text: str) -> None:
    """``text`` into ``path`` through a temporary file beside it, renamed into place: ``path`` is
    the old file or the new one, never a part. A full disk, a spent quota or a read-only
    filesystem raise :class:`~maxpoolbert.core.errors.WriteFailed` (one line); the temporary file goes."""
    def write(tmp: Path) -> None:
        with tmp.open("w") as f:
            f.write(text)
            synced(f)

    write_through(path, write, OSError)


def synced(f: Any) -> None:
    """Flush the open file ``f`` to the disk."""
    f.flush()
    os.fsync(f.fileno())


def write_through(path: Path, write: Callable[[Path], None], catch: type[BaseException] = Exception) -> None:
    """``write(tmp)`` into a temporary file beside ``path``, then renamed into place: ``path`` is the
    old file or the new one, never a part. A full disk, a spent quota or a read-only filesystem
    (an error of type ``catch`` that :func:`~maxpoolbert.core.errors.write_failure` recognises) raise
    :class:`~maxpoolbert.core.errors.WriteFailed` (one line); the temporary file never stays."""
    tmp = tmp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except catch as err:
        tmp.unlink(missing_ok=True)
        failed = write_failure(path, err)
        if failed is None:
            raise
        raise failed from err
    finally:
        tmp.unlink(missing_ok=True)


def umask() -> int:
    """The process's umask (read by setting it, and set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_new_file(path: Path) -> None:
    """The permissions the user's umask gives a new file (0644 with umask 022) on ``path``, which
    a library wrote private (0600)."""
    path.chmod(0o666 & ~umask())


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(_finite(obj), indent=2) + "\n")


def _finite(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def set_aside(path: Path, suffix: str = CORRUPT) -> Path:
    """Rename ``path`` to ``<path><suffix>`` (``.1``, ``.2`` ... when taken); returns the new name."""
    target = path.with_name(path.name + suffix)
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{suffix}.{n}")
    os.replace(path, target)
    return target
