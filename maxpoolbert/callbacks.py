"""Hydra callbacks: a sweep ends with a summary of what each job did in this launch, and a
non-zero exit if any job failed."""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from maxpoolbert import rundir

log = logging.getLogger("maxpoolbert")

OUTCOMES = {  # outcome recorded by a job -> how the summary names it
    "finished": "finished", "rerun": "re-run (broken results.json)", "skipped": "skipped (already finished)",
    "failed": "failed", "refused": "refused (folder holds other settings)",
}
FAILURES = ("failed", "refused")


class SweepSummary(Callback):
    """Tags every job of this launch (``MAXPOOLBERT_LAUNCH``, inherited by the launcher's
    processes and SLURM jobs), and after the sweep counts what the jobs recorded in their folders'
    ``launches.jsonl``: finished, skipped, re-run, failed."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[rundir.LAUNCH_ENV] = uuid.uuid4().hex

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        launch = os.environ.get(rundir.LAUNCH_ENV)
        counts: Counter[str] = Counter()
        failed: list[tuple[Path, str]] = []
        resumed = 0
        for path in sorted(root.rglob(rundir.LAUNCHES)):
            mine = [e for e in rundir.launches(path.parent) if e.get("launch") == launch]
            if not mine:
                continue  # a folder of another launch
            last = mine[-1]
            counts[last["outcome"]] += 1
            resumed += bool(last.get("resumed"))
            if last["outcome"] in FAILURES:
                failed.append((path.parent, last.get("error", "")))
        parts = [f"{counts[k]} {name}" for k, name in OUTCOMES.items() if counts[k] or k in ("finished", "failed")]
        if resumed:
            parts.append(f"{resumed} resumed from a checkpoint")
        log.info("sweep %s: %s", root, ", ".join(parts))
        for path, error in failed:
            log.error("failed: %s: %s", path, error)
        if failed:
            raise SystemExit(f"error: {len(failed)} job(s) of the sweep failed; re-run the same command to retry them")
