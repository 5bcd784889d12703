"""Run ``train.py`` and SIGKILL it half-way through writing its N-th checkpoint, wherever the
bytes go: into the run folder (``torch.save`` to a file), or copied into place from ``$TMPDIR``
(``shutil.move``, as Lightning's own fsspec writer does across filesystems).

    python tests/kill_during_checkpoint.py N path/to/train.py override ...
"""

import io
import os
import runpy
import shutil
import signal
import sys

import torch

nth = int(sys.argv[1])
script = sys.argv[2]
seen = 0
_save, _move = torch.save, shutil.move


def _is_checkpoint(target) -> bool:
    name = str(getattr(target, "name", target))
    return "checkpoints" in name or name.endswith(".ckpt")


def _half_then_die(data: bytes, target) -> None:
    if hasattr(target, "write"):
        target.write(data[: len(data) // 2])
        target.flush()
    else:
        with open(target, "wb") as f:
            f.write(data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)


def save(obj, f, *args, **kwargs):
    global seen
    if _is_checkpoint(f):
        seen += 1
        if seen == nth:
            buffer = io.BytesIO()
            _save(obj, buffer, *args, **kwargs)
            _half_then_die(buffer.getvalue(), f)
    return _save(obj, f, *args, **kwargs)


def move(src, dst, *args, **kwargs):
    global seen
    if _is_checkpoint(dst):
        seen += 1
        if seen == nth:
            with open(src, "rb") as f:
                _half_then_die(f.read(), dst)
    return _move(src, dst, *args, **kwargs)


torch.save, shutil.move = save, move
sys.argv = [script, *sys.argv[3:]]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
