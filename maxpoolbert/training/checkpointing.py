"""Resume checkpoints: one rolling ``checkpoints/last.ckpt`` per run, written atomically in the
run folder itself. Loading and repairing them on a relaunch is :mod:`maxpoolbert.runs.folder`'s."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from maxpoolbert.core.io import synced, write_through
from maxpoolbert.runs.folder import LAST_CKPT


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes beside the target, then renames: a kill at any moment leaves either the previous
    checkpoint or the new one, never a partial file, and nothing in ``$TMPDIR``. (Lightning's own
    writer stages the file in ``$TMPDIR`` and copies it into place, which is not atomic when the
    two are on different filesystems, the usual cluster layout.) A partial temporary file left by
    a kill is removed at the next start (:meth:`maxpoolbert.runs.folder.RunFolder.clean_stale_tmp`).

    A full disk, a spent quota or a read-only filesystem raise
    :class:`~maxpoolbert.core.errors.WriteFailed` (``torch.save`` itself reports them as
    ``RuntimeError: ... unexpected pos``), which Lightning passes on unchanged; the temporary file
    is removed and the previous checkpoint stays."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path) -> None:
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                synced(f)

        write_through(path, write)


class ResumeCheckpoint(ModelCheckpoint):
    """One rolling ``checkpoints/last.ckpt``, written at the end of every n-th training epoch
    except the last: after the last epoch only the results are left to write, so a checkpoint
    there (hundreds of MB for BERT-base, with the optimizer state) would be written only to be
    deleted."""

    def __init__(self, dirpath: Path, every_n_epochs: int) -> None:
        super().__init__(dirpath=dirpath, filename=Path(LAST_CKPT).stem, save_top_k=1, enable_version_counter=False,
                         every_n_epochs=every_n_epochs, save_on_train_epoch_end=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        last_epoch = trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
        last_step = trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps
        if not (last_epoch or last_step or trainer.should_stop):
            super().on_train_epoch_end(trainer, pl_module)
