"""Hydra callbacks: a sweep ends with a summary, and a non-zero exit if any job failed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("maxpoolbert")


class SweepSummary(Callback):
    """After a multirun: how many jobs finished and which failed (their ``failed.json``)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        done = sorted(p.parent for p in root.rglob("results.json"))
        failed = sorted(p.parent for p in root.rglob("failed.json") if not (p.parent / "results.json").exists())
        log.info("sweep %s: %d finished, %d failed", root, len(done), len(failed))
        for path in failed:
            log.error("failed: %s (see failed.json)", path)
        if failed:
            raise SystemExit(f"error: {len(failed)} job(s) of the sweep failed; re-run the same command to retry them")
