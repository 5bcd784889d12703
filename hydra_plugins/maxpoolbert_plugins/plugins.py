"""Thin Hydra plugin classes; see :mod:`maxpoolbert.launch.sweeps` for what they do."""

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

from maxpoolbert.config import lightning_flags
from maxpoolbert.launch.sweeps import SkipFinishedLaunches, WatchedSlurmLaunch

# Hydra imports this module before it composes any config: every lightning.Trainer flag becomes
# the config lightning/trainer_flags, which configs/trainer/default.yaml builds on.
lightning_flags.register()


class SkipFinishedSweeper(SkipFinishedLaunches, BasicSweeper):
    """Hydra's basic sweeper that launches only the jobs whose run folder is not finished."""


class WatchedSlurmLauncher(WatchedSlurmLaunch, SlurmLauncher):
    """submitit's SLURM launcher that gives up, in one line, on jobs that can never start."""
