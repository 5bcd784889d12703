"""Memory that a run's process has freed goes back to the system between training and evaluation.

glibc's malloc serves a block of at least its mmap threshold with a mapping of its own, returned to
the system when freed; but each time it frees such a block it raises the threshold to that block's
size (up to 32 MiB). After the first training step a step's activations (a few MiB to 25 MiB each
for MiniLM at batch 32) come from the heap, which keeps the memory of the largest step, free but
held. Evaluation's blocks (batch 128: other sizes) do not fit its holes and are added on top.
:func:`release` (``malloc_trim``) returns the heap's free pages when training hands over to
evaluation and back: a few calls per epoch, no effect on any value.

A fixed threshold (glibc's own ``MALLOC_MMAP_THRESHOLD_=4194304``) would also return each step's
large blocks (about 270 MB less at the peak of the default run) but costs a page fault per 4 KiB of
every new block: 10 to 20 % more CPU time per step on a small machine, so it is not the default.
Between the jobs of a sweep's worker (joblib runs job after job in one process) :func:`between_runs`
collects the finished run's reference cycles (the trainer, the module, the data) and trims: the
process goes back to its size after the imports (about 0.6 GB instead of 1.6-1.9 GB), so an idle
worker does not hold a finished run's memory while its neighbour trains, the next run does not start
on the last one's holes, and joblib's workers are not replaced (loky restarts a worker whose memory
grew 300 MB over its size after its first job, the imports paid again: about 7 s a restart). The
full collection costs about 0.3 s (600,000 objects, most of them the libraries'): worth it once per
job of a sweep, not forced on ``maxpoolbert.train``'s caller, whose process Python collects as usual.
Light on purpose (ctypes only); trims nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import gc
import os


def glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # not a glibc system
        return False


def release() -> None:
    """Give the heap's free memory back to the system (glibc's ``malloc_trim``)."""
    if not glibc():
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def between_runs() -> None:
    """After a run in a sweep's worker, before its next job: the run's objects collected, the freed
    memory given back. Values of the runs are not touched."""
    gc.collect()
    release()
