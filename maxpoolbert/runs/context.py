"""How a run was launched: :class:`RunContext`, the one place that reads Hydra's runtime.

A run needs a few facts that are not settings: its folder, whether it is one job of a sweep (and
which, and how many run beside it), the keys its command line set, and Hydra's own description of
the job (stored in ``.hydra/hydra.yaml``). :meth:`RunContext.from_hydra` reads them inside a Hydra
app (``train.py``, a sweep's job, :func:`maxpoolbert.train`); the plain constructor makes one
without Hydra (a test, a script). The run code (:mod:`maxpoolbert.launch.run`, ``trainer``, ``loggers``)
takes it as an argument and never asks Hydra itself.

Light on purpose (no torch, no Hydra at import): ``train.py`` imports it before anything heavy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

RUN, MULTIRUN = "RunMode.RUN", "RunMode.MULTIRUN"  # Hydra's modes, as ``.hydra/hydra.yaml`` stores them


@dataclass(frozen=True)
class RunContext:
    """One launch of one run.

    ``output_dir``: the run folder. ``multirun``: one job of a sweep (``sweep_dir``, its job number
    ``job_num``, ``n_jobs`` jobs side by side on this machine as the launcher says, None: unknown).
    ``overrides``: the command line's overrides of the job's config (Hydra's ``overrides.task``).
    ``hydra``: Hydra's ``hydra`` node of the job (None without Hydra: :meth:`hydra_node` makes a
    small one). ``argv``: the command line that launched it (None: the Python entry)."""

    output_dir: str
    multirun: bool = False
    job_num: int = 0
    sweep_dir: str | None = None
    n_jobs: int | None = None
    overrides: tuple[str, ...] = ()
    hydra: Any = None
    argv: tuple[str, ...] | None = None

    @classmethod
    def from_hydra(cls, node: Any = None, argv: tuple[str, ...] | None = None) -> RunContext:
        """The context of the running Hydra job (``HydraConfig``), or of a composed config's
        ``hydra`` node ``node`` (its ``runtime.output_dir`` set). ``argv``: the launching command
        line (default: none, a Python call)."""
        if node is None:
            from hydra.core.hydra_config import HydraConfig

            node = HydraConfig.get()
        multirun = str(node.mode).rpartition(".")[2] == "MULTIRUN"  # RunMode.MULTIRUN live; MULTIRUN stored
        n_jobs = node.launcher.get("n_jobs") if multirun and "launcher" in node else None
        return cls(output_dir=str(node.runtime.output_dir), multirun=multirun,
                   job_num=int(node.job.num) if multirun else 0,
                   sweep_dir=str(node.sweep.dir) if multirun else None,
                   n_jobs=None if n_jobs is None else int(n_jobs),
                   overrides=tuple(str(o) for o in node.overrides.task), hydra=node, argv=argv)

    # ------------------------------------------------------------------ what the run asks
    @property
    def folder_key(self) -> str:
        """The setting that names the run's folder (in messages)."""
        return "hydra.sweep.dir" if self.multirun else "hydra.run.dir"

    def command_line_keys(self) -> set[str]:
        """The keys the command line set (sweep values included), e.g. ``pooling.module.k``."""
        return {o.split("=", 1)[0].lstrip("+~") for o in self.overrides}

    def parallel_jobs(self) -> int:
        """How many jobs of this sweep share this machine: the launcher's ``n_jobs`` (-1: one per
        core), else 1."""
        if not self.multirun or self.n_jobs is None:
            return 1
        n = self.n_jobs or 1
        return (os.cpu_count() or 1) if n < 0 else n

    def hydra_node(self) -> Any:
        """Hydra's ``hydra`` node of the job (what ``.hydra/hydra.yaml`` stores); without Hydra a
        small one: mode, folder, overrides and the project's neutral keys."""
        from omegaconf import OmegaConf

        if self.hydra is not None:
            return self.hydra
        from maxpoolbert.runs.identity import neutral_keys

        return OmegaConf.create({
            "mode": MULTIRUN if self.multirun else RUN,
            "run": {"dir": self.output_dir}, "sweep": {"dir": self.sweep_dir},
            "overrides": {"hydra": [], "task": list(self.overrides)},
            "job": {"num": self.job_num, "config": {"override_dirname": {"exclude_keys": list(neutral_keys())}}},
            "runtime": {"output_dir": self.output_dir}})

    def hydra_plain(self) -> dict[str, Any] | None:
        """:meth:`hydra_node` as plain values, unresolved (None without Hydra)."""
        from omegaconf import OmegaConf

        if self.hydra is None:
            return None
        return OmegaConf.to_container(self.hydra, resolve=False)
