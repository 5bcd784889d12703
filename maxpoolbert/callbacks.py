"""Hydra callbacks: the config is checked before anything runs; a sweep ends with a summary,
and a non-zero exit if any job failed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from maxpoolbert.errors import UserError, check_writable_folder, fail
from maxpoolbert.schema import check
from maxpoolbert.tasks import check_glue_dir

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


class CheckConfig(Callback):
    """Refuses a bad setting right after Hydra composes the config: before torch & co. are
    imported, before any folder is made, and for a sweep before any job starts (a value swept
    over is checked again in each job: a bad one fails that job alone)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, folder_key: str) -> None:
        try:
            check(config)
            check_glue_dir(config.data.get("glue_dir"))
            check_writable_folder(OmegaConf.select(config, folder_key), folder_key)
            if config.data.get("cache_dir"):
                check_writable_folder(config.data.cache_dir, "data.cache_dir")
        except UserError as err:
            fail(err)
