"""A run as a function call: :func:`train`, for notebooks, scripts and tests.

``maxpoolbert.train(["task=rte", "pooling=cls", "seed=3"]) -> RunRecord`` does what
``python train.py task=rte pooling=cls seed=3`` does, in this process: the same configs and
defaults (composed with Hydra's compose API from the project's ``configs/``), the same checks
before anything heavy loads, the same run folder (default: the command line's ``hydra.run.dir``,
``outputs/runs/<date>/<time>_<task>_<pooling>_s<seed>`` under the current folder) with the same
files, and the same record (:class:`~maxpoolbert.runs.record.RunRecord`, also in ``results.json``).
A refusal is raised (:class:`~maxpoolbert.core.errors.UserError`, its text the command line's one line
without ``error:``) instead of ending the process; an already finished folder is skipped (its
record returned) unless ``skip_finished=false``.

Light on purpose: torch and the rest load when :func:`train` runs, not when it is imported.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maxpoolbert.runs.record import RunRecord

# Folders taken from the environment, made absolute against the folder the user started in, once:
# a relative GLUE_DIR then means the same folder in every job of a sweep, a SLURM job and a later
# `predict` (run configs store ${oc.env:GLUE_DIR,null}, never a path of this machine).
PATH_VARIABLES = ("GLUE_DIR", "SUPERGLUE_DIR", "MAXPOOLBERT_CACHE")


def absolute_path_variables() -> None:
    for name in PATH_VARIABLES:
        value = os.environ.get(name)
        if value and not os.path.isabs(os.path.expanduser(value)):
            os.environ[name] = os.path.abspath(os.path.expanduser(value))


def train(overrides: Sequence[str] = (), output_dir: str | os.PathLike | None = None) -> RunRecord:
    """Train one run, as ``python train.py *overrides`` would, and return its record.

    ``overrides``: the command line's ``key=value`` overrides (``"model=tiny"``,
    ``"trainer.max_steps=4"``); ``output_dir``: the run folder (as ``hydra.run.dir=``; default the
    command line's). Raises :class:`~maxpoolbert.core.errors.UserError` for a bad setting, missing data
    or a folder that holds another run's settings or is in use; anything else as it comes."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import configure_log
    from omegaconf import open_dict, read_write

    from maxpoolbert.config.schema import additions, check_command_line
    from maxpoolbert.core.errors import UserError
    from maxpoolbert.launch.callbacks import check_single_run
    from maxpoolbert.runs.context import RunContext
    from maxpoolbert.runs.folder import RunFolderConflict
    from maxpoolbert.tasks.task import CONFIGS

    args = [str(o) for o in overrides]
    for arg in args:
        if arg.startswith("-"):
            raise UserError("not an override: options of train.py (-m, --cfg, ...) are the command line's",
                            key="overrides", value=arg, allowed="key=value overrides, as on the command line")
    absolute_path_variables()
    check_command_line(args)
    args = additions(args)
    if output_dir is not None:
        args.append(f"hydra.run.dir={os.fspath(output_dir)}")
    outer = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
    GlobalHydra.instance().clear()  # a caller's own initialize(): set aside, and back after composing
    try:
        with initialize_config_dir(config_dir=str(CONFIGS), job_name="train", version_base="1.3"):
            config = compose("config", overrides=[*args, "hydra.mode=RUN"], return_hydra_config=True)
    finally:
        if outer is not None:
            GlobalHydra.instance().initialize(outer)
    with open_dict(config.hydra):  # as Hydra's run_job: the folder resolved once, absolute
        config.hydra.runtime.output_dir = os.path.abspath(str(config.hydra.run.dir))
    hydra = HydraConfig.instance()
    previous = hydra.cfg
    hydra.set_config(config)  # ${hydra:runtime.output_dir} in the settings resolves against this run
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        try:
            check_single_run(config)
        except RunFolderConflict as err:
            raise UserError(str(err)) from None
        job = copy.deepcopy(config)  # the job's own config, as Hydra's run_job hands it over
        with read_write(job), open_dict(job):
            del job["hydra"]
        Path(config.hydra.runtime.output_dir).mkdir(parents=True, exist_ok=True)
        configure_log(config.hydra.job_logging, config.hydra.verbose)  # the run's log file, as the CLI's
        from maxpoolbert.launch.run import launch

        record = launch(job, RunContext.from_hydra(config.hydra), raises=True)
    finally:
        for handler in root.handlers:  # the caller's logging back: the run's log file closed
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        hydra.cfg = previous
    return record
