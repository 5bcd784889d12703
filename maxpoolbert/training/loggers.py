"""Experiment loggers. W&B runs offline unless an API key is configured, and never blocks."""

from __future__ import annotations

import netrc
import os
import secrets
import string
from pathlib import Path


def wandb_api_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc(os.environ.get("NETRC", Path.home() / ".netrc"))
        return any(host.startswith("api.wandb.ai") for host in auth.hosts)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb(project: str, name: str, save_dir: str, group: str | None = None, tags: list[str] | None = None,
          entity: str | None = None, mode: str | None = None, job_type: str = "train"):
    """Lightning's ``WandbLogger``. ``mode`` (``online``/``offline``/``disabled``) defaults to the
    ``WANDB_MODE`` variable, else ``online`` with an API key and ``offline`` without one:
    offline runs land in ``<run dir>/wandb/`` and can be uploaded later with ``wandb sync``.
    The run id is the run folder's own (:func:`run_id`), so a resumed run logs into its W&B run."""
    import wandb as wb
    from lightning.pytorch.loggers import WandbLogger

    mode = mode or os.environ.get("WANDB_MODE") or ("online" if wandb_api_key_configured() else "offline")
    logger = WandbLogger(
        project=project, name=name, save_dir=save_dir, group=group, tags=list(tags or []), entity=entity,
        job_type=job_type, mode=mode, offline=mode == "offline", id=run_id(Path(save_dir)), resume="allow",
        settings=wb.Settings(init_timeout=90, silent=True),
    )
    # Lightning passes anonymous=None to wandb.init whatever is asked, and W&B (0.19 on) warns on
    # every run that "the anonymous setting has no effect": not passed when unset, no warning.
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and init.get("anonymous") is None:
        init.pop("anonymous", None)
    return logger


def run_id(run_dir: Path) -> str:
    """The W&B run id of this run folder, made on its first start and kept there: a resumed run
    (killed, requeued, relaunched) continues its own W&B run instead of starting a new one, online
    or offline (``wandb sync`` then uploads all parts into that one run)."""
    from maxpoolbert.runs.folder import RunFolder

    alphabet = string.ascii_lowercase + string.digits  # W&B's own id format: 8 of these
    return RunFolder(run_dir).wandb_id(lambda: "".join(secrets.choice(alphabet) for _ in range(8)))


def none():
    """``logger=none``: no experiment logger at all."""
    return False


# ---------------------------------------------------------------------------- a run's logger
def from_config(cfg, ctx=None):
    """The run's logger (``False`` for ``logger=none``). A logger's ``group`` left null (W&B's)
    becomes the sweep folder's name in multirun (``ctx``: a :class:`~maxpoolbert.runs.context.RunContext`;
    None: a single run)."""
    from hydra.utils import instantiate

    extra = {}
    if "group" in cfg.logger and cfg.logger.group is None and ctx is not None and ctx.multirun:
        extra["group"] = Path(ctx.sweep_dir).name
    return instantiate(cfg.logger, **extra)


def log_final(logger, metrics: dict[str, float], score: float) -> None:
    """The run's selected dev metrics, as ``final/*`` points and (W&B) in the run summary."""
    if not logger:
        return
    logger.log_metrics({f"final/{k}": v for k, v in metrics.items()} | {"final/score": score})
    if hasattr(logger, "experiment") and hasattr(logger.experiment, "summary"):
        logger.experiment.summary.update({"score": score, **{f"metrics/{k}": v for k, v in metrics.items()}})


def finish(logger) -> None:
    """Each job ends its W&B run, or the next job of a multirun logs into it."""
    from lightning.pytorch.loggers import WandbLogger

    if isinstance(logger, WandbLogger):
        import wandb as wb

        if wb.run is not None:
            wb.finish()


def teardown() -> None:
    """Flush and stop W&B's service before the process exits without the interpreter's teardown."""
    import sys

    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
