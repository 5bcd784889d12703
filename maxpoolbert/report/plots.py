"""The report's figures (matplotlib, Agg backend): low-resource curves and seed stability."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from maxpoolbert.report.collect import tasks_of
from maxpoolbert.report.stats import _scored, _sort, pooling_key
from maxpoolbert.tasks import TaskInfo

# --------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(poolings: Iterable[str]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {p: cmap(i % 10) for i, p in enumerate(sorted(set(poolings), key=pooling_key))}


def _grid(n: int, plt, width: float = 4.6, height: float = 3.6):
    """A constrained-layout figure with ``n`` subplots, at most 3 per row."""
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 1.0),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def plot_low_resource(low: pd.DataFrame, path: Path, tasks: dict[str, TaskInfo],
                      full_sizes: dict[str, int]) -> bool:
    """Score vs training-set size (log x), one subplot per task; False if there is no data.

    One line per pooling (line style per model), error bars = std over seeds. The full training
    set is the right-most point, placed at its size (``full_sizes``: the runs' ``n_train_full``,
    :func:`~maxpoolbert.report.stats.full_train_sizes`), or, unknown or not beyond the largest
    reduced size, at 4 times that size.
    """
    if low.empty or low["train_size"].notna().sum() == 0:
        return False
    plt = _pyplot()
    from matplotlib.ticker import NullLocator

    names = [t for t in tasks if t in set(low["task"])]
    models = sorted(set(low["model"]))
    colors = _colors(low["pooling"])
    styles = ["-", "--", ":", "-."]
    fig, axes = _grid(len(names), plt)
    handles = {}
    for ax, task in zip(axes, names, strict=True):
        sub = low[low["task"] == task]
        sizes = sorted(int(s) for s in sub["train_size"].dropna().unique())
        full_n = full_sizes.get(task)
        full_x = full_n if full_n is not None and full_n > sizes[-1] else sizes[-1] * 4
        lines = sorted(sub.groupby(["model", "pooling"]),
                       key=lambda g: (g[0][0], pooling_key(g[0][1])))
        for (model, pooling), line in lines:
            line = _sort(line, ["train_size"])
            x = np.array([full_x if pd.isna(s) else int(s) for s in line["train_size"]])
            order = np.argsort(x)
            label = pooling if len(models) == 1 else f"{model} / {pooling}"
            handles[label] = ax.errorbar(
                x[order], line["mean"].to_numpy()[order],
                yerr=line["std"].fillna(0).to_numpy()[order], marker="o", capsize=3,
                color=colors[pooling], linestyle=styles[models.index(model) % len(styles)])
        has_full = bool(sub["train_size"].isna().any())
        ax.set_xscale("log")
        ax.set_xticks([*sizes, *([full_x] if has_full else [])])
        full_label = "full" if full_n is None else f"full\n({full_n:,})"
        ax.set_xticklabels([f"{t:,}" for t in sizes] + ([full_label] if has_full else []))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(tasks[task].header)
        ax.set_xlabel("training examples (log scale)")
        ax.set_ylabel("dev score ×100")
        ax.grid(alpha=0.3)
    entry_width = 0.7 + 0.09 * max(len(label) for label in handles)  # inches, roughly
    ncol = max(1, min(len(handles), int(fig.get_figwidth() // entry_width)))
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=ncol,
               title="pooling" if len(models) == 1 else "model / pooling")
    benchmarks = "/".join(dict.fromkeys(tasks[t].benchmark_name for t in names))
    fig.suptitle(f"Low-resource {benchmarks}: mean dev score vs training-set size\n"
                 "(error bars: std over seeds)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_stability(runs: pd.DataFrame, path: Path) -> bool:
    """Box plot plus one dot per seed of the full-size scores, one subplot per task.

    Degenerate seeds are red crosses; the majority-class score is a dashed line when it lies
    near the scores (otherwise its value is written in the corner, to keep the boxes readable).
    """
    data = _scored(runs)
    data = data[data["train_size"].isna()]
    if data.empty:
        return False
    plt = _pyplot()
    from matplotlib.lines import Line2D

    tasks = tasks_of(data)
    models = sorted(set(data["model"]))
    colors = _colors(data["pooling"])
    fig, axes = _grid(len(tasks), plt, width=4.8, height=3.9)
    any_degenerate = any_majority = False
    for ax, task in zip(axes, list(tasks), strict=True):
        sub = data[data["task"] == task]
        groups = sorted(sub.groupby(["model", "pooling"]),
                        key=lambda g: (g[0][0], pooling_key(g[0][1])))
        values = [g["score"].to_numpy() * 100 for _, g in groups]
        ax.boxplot(values, positions=range(len(values)), widths=0.5, showfliers=False,
                   medianprops={"color": "black"})
        for i, ((_, pooling), g) in enumerate(groups):
            y = g["score"].to_numpy() * 100
            x = i + (np.linspace(-0.12, 0.12, len(y)) if len(y) > 1 else np.zeros(1))
            degen = g["degenerate"].fillna(False).to_numpy(dtype=bool)
            ax.scatter(x[~degen], y[~degen], color=colors[pooling], edgecolor="black",
                       zorder=3, s=28)
            ax.scatter(x[degen], y[degen], color="red", marker="x", zorder=4, s=45)
            any_degenerate |= bool(degen.any())
        majority = sub["majority_score"].dropna()
        note = ""
        if not majority.empty:
            level = majority.mean() * 100
            low, high = min(v.min() for v in values), max(v.max() for v in values)
            if level >= low - max(5.0, 0.5 * (high - low)):
                ax.axhline(level, color="grey", linestyle="--", linewidth=1)
                any_majority = True
            else:
                note = f"\nmajority-class score {level:.1f}: far below, not drawn"
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([p if len(models) == 1 else f"{m}\n{p}" for (m, p), _ in groups],
                           rotation=20, ha="right")
        ax.set_title(tasks[task].header + note, fontsize=10 if note else None)
        ax.set_xlabel("pooling")
        ax.set_ylabel("dev score ×100")
        ax.grid(axis="y", alpha=0.3)
    legend = [Line2D([], [], marker="o", color="grey", markeredgecolor="black", linestyle="",
                     label="one seed")]
    if any_degenerate:
        legend.append(Line2D([], [], marker="x", color="red", linestyle="",
                             label="degenerate seed (≤ majority class)"))
    if any_majority:
        legend.append(Line2D([], [], color="grey", linestyle="--", label="majority-class score"))
    fig.legend(handles=legend, loc="outside lower center", ncol=len(legend))
    fig.suptitle("Seed stability on the full training set\n(boxes: quartiles over seeds)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
