"""A W&B run's summary and config as a run record's payload (``report --wandb``): the runs of a
W&B project read like run folders (:class:`~maxpoolbert.runs.record.RunRecord`)."""

from __future__ import annotations

from typing import Any

from maxpoolbert.tasks.task import task_info as configured_task_info


def wandb_plain(value: Any) -> Any:
    """W&B summary/config wrappers as plain dicts (they expose ``_json_dict``)."""
    value = getattr(value, "_json_dict", value)
    if isinstance(value, dict):
        return {k: wandb_plain(v) for k, v in value.items()}
    return value


def _lookup(mapping: dict[str, Any], *keys: str) -> Any:
    """First present key; ``a.b`` looks into nested dicts; a dict value yields its ``name``."""
    for key in keys:
        node: Any = mapping
        if key in node:
            node = node[key]
        else:
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    node = None
                    break
                node = node[part]
        if isinstance(node, dict) and "value" in node and len(node) <= 2:
            node = node["value"]
        if isinstance(node, dict):
            node = node.get("name")
        if node is not None:
            return node
    return None


def payload_from_wandb(summary: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A W&B run (its summary and config, :func:`wandb_plain`) as a ``results.json`` payload for
    :meth:`RunRecord.from_json` (whose ``config`` argument is the run's W&B config: the resolved
    run config that :mod:`maxpoolbert.launch.run` logs, from which its settings are computed).

    Task, pooling, model, seed and train size come from ``config`` (flat keys, dotted keys or nested
    Hydra groups with a ``name``), falling back to ``summary``. Metrics come from
    ``summary["metrics"]`` or ``metrics/<key>``, ``dev/<key>``, ``val/<key>`` or bare ``<key>``
    entries; ``score`` defaults to the mean of the metrics. ``task_info`` comes from the summary,
    or from the run's task config when it names its benchmark, else from the project's configs."""
    from maxpoolbert.tasks.task import config_info

    record: dict[str, Any] = {}
    for key in ("task", "pooling", "model", "seed"):
        value = _lookup(config, key, f"{key}.name")
        record[key] = value if value is not None else _lookup(summary, key)
    size = _lookup(config, "train_size", "data.train_size")
    record["train_size"] = size if size is not None else _lookup(summary, "train_size")
    metrics = dict(summary["metrics"]) if isinstance(summary.get("metrics"), dict) else {}
    info: Any = summary.get("task_info")
    node = config.get("task")
    if not isinstance(info, dict) and isinstance(node, dict) and "benchmark" in node:
        try:
            info = config_info(node).to_dict()
        except (AttributeError, TypeError, ValueError):  # not the shape of a task config
            info = None
    if isinstance(info, dict):
        record["task_info"] = info
    known = configured_task_info(str(record["task"])) if record["task"] is not None else None
    names = (info or {}).get("metrics") if isinstance(info, dict) else (known.metrics if known else ())
    for name in names or ():
        if name not in metrics:
            for key in (f"metrics/{name}", f"dev/{name}", f"val/{name}", name):
                if key in summary:
                    metrics[name] = summary[key]
                    break
    record["metrics"] = metrics
    score = summary.get("score")
    if score is None and metrics:
        score = sum(float(v) for v in metrics.values()) / len(metrics)
    record["score"] = score
    for key in ("train_samples_per_s", "wall_s", "params", "majority_score", "n_train", "n_train_full",
                "settings", "settings_id"):
        if key in summary:
            record[key] = summary[key]
    return {k: v for k, v in record.items() if v is not None or k == "train_size"}
