"""Experiment loggers. W&B runs offline unless an API key is configured, and never blocks."""

from __future__ import annotations

import netrc
import os
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
    offline runs land in ``<run dir>/wandb/`` and can be uploaded later with ``wandb sync``."""
    import wandb as wb
    from lightning.pytorch.loggers import WandbLogger

    mode = mode or os.environ.get("WANDB_MODE") or ("online" if wandb_api_key_configured() else "offline")
    return WandbLogger(
        project=project, name=name, save_dir=save_dir, group=group, tags=list(tags or []), entity=entity,
        job_type=job_type, mode=mode, offline=mode == "offline",
        settings=wb.Settings(init_timeout=90, silent=True),
    )


def none():
    """``logger=none``: no experiment logger at all."""
    return False
