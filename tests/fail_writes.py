"""Run ``train.py`` on a disk that fills up while one kind of file is written: the writer fails
half-way with ENOSPC as the real one does (``torch.save`` as ``RuntimeError: ... unexpected pos``
with the ``OSError`` as its context; safetensors and plain files with the ``OSError``).

    python tests/fail_writes.py KIND path/to/train.py override ...

KIND: ``checkpoint`` (``checkpoints/*.ckpt``), ``weights`` (``model.safetensors``), ``results``
(``results.json``, on its ``fsync``), ``full`` (every file written through a temporary file: the run folder's
``.hydra/`` when it is claimed, then ``failed.json``); ``kill-weights``: the process is killed (SIGKILL)
half-way through writing ``model.safetensors`` (pre-emption, the OOM killer).
"""

import errno
import os
import runpy
import sys

import torch

kind = sys.argv[1]
script = sys.argv[2]


def full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


if kind == "checkpoint":
    _save = torch.save

    def save(obj, f, *args, **kwargs):
        if "checkpoints" in str(getattr(f, "name", f)):
            f.write(b"PK\x03\x04 partial")
            try:
                raise full()
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904 - as torch
        return _save(obj, f, *args, **kwargs)

    torch.save = save
elif kind == "weights":
    import safetensors.torch

    def save_model(model, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise full()

    safetensors.torch.save_model = save_model
elif kind == "kill-weights":
    import signal

    import safetensors.torch

    def save_model(model, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"partial")
        os.kill(os.getpid(), signal.SIGKILL)

    safetensors.torch.save_model = save_model
elif kind == "results":
    _fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") and ".results.json." in os.readlink(f"/proc/self/fd/{fd}"):
            raise full()
        return _fsync(fd)

    os.fsync = fsync
elif kind == "full":  # the disk is full from the start: no file is written (the run folder's .hydra/ first)
    _fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            raise full()
        return _fsync(fd)

    os.fsync = fsync
else:
    raise SystemExit(f"unknown kind {kind}")

sys.argv = [script, *sys.argv[3:]]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
