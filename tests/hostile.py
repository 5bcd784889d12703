"""Hostile run folders: payloads that leave a marker file when they run (a pickled object's
``__reduce__``, a stored config's ``_target_``), for the tests that show nothing runs them."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import yaml


class Payload:
    """Unpickled, it creates ``marker`` (any code could run there)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint as ``torch.save`` writes it (a zip with intact CRCs) with the keys of a
    Lightning checkpoint and a payload among them."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "global_step": 3, "epoch": 0, "payload": Payload(marker)}, path)
    return path


# _target_ payloads, each creating the marker file when instantiated
def payloads(tmp: Path, marker: Path) -> dict[str, dict]:
    pickled = tmp / "payload.pkl"
    pickled.write_bytes(pickle.dumps(Payload(marker)))
    return {"torch.load": {"_target_": "torch.load", "f": str(pickled), "weights_only": False},
            "os.system": {"_target_": "os.system", "_args_": [f"touch {marker}"]},
            "builtins.eval": {"_target_": "builtins.eval", "_args_": [f"open({str(marker)!r}, 'w')"]}}


SECTIONS = {"model": ("model", "encoder"), "pooling": ("pooling", "module"), "task": ("task",)}


def plant_config(config_file: Path, section: str, payload: dict) -> str:
    """Put ``payload`` in the stored config's ``section`` (model: ``model.encoder``; pooling:
    ``pooling.module``; task: the task node); returns the key the refusal must name."""
    cfg = yaml.safe_load(config_file.read_text())
    node = cfg
    *parents, last = SECTIONS[section]
    for key in parents:
        node = node[key]
    node[last] = payload
    config_file.write_text(yaml.safe_dump(cfg))
    return ".".join(SECTIONS[section]) + "._target_"


def finished_run(run_dir: Path, cfg) -> Path:
    """A run folder with a stored config (an OmegaConf node), a finished run's record and a weights
    file (not read before the config is checked)."""
    from omegaconf import OmegaConf

    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    (run_dir / "model.safetensors").write_bytes(b"not read")
    (run_dir / "results.json").write_text(json.dumps({
        "task": cfg.task.name, "pooling": cfg.pooling.name, "model": cfg.model.name, "seed": cfg.seed,
        "metrics": {k: 0.5 for split in cfg.task.eval.values() for k in split.metrics}, "score": 0.5,
        "settings": {}, "settings_id": "x"}))
    return run_dir
