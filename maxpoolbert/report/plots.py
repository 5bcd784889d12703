"""The report's figures (matplotlib, Agg backend): low-resource curves with confidence bands,
seed stability (every seed, the mean and its interval), the forest plot of the paired differences
against ``cls`` and the search-budget curves. Every series has its own colour and marker."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from maxpoolbert.report.collect import tasks_of
from maxpoolbert.report.stats import MAIN, _scored, _sort, in_main, main_sizes, pooling_key
from maxpoolbert.tasks.task import TaskInfo

# --------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Filled markers first (they read best), then open ones: with the colours below, every series of a
# figure gets its own colour and its own marker (up to len(MARKERS) series; beyond, the colour alone
# stays unique).
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p", "8", "H", "d", "1", "2", "3", "4", "+", "x")


def _series_key(series: Any) -> tuple:
    """Report order of a series: a pooling name, or a (model, pooling) pair."""
    if isinstance(series, tuple):
        return (*series[:-1], pooling_key(series[-1]))
    return (pooling_key(series),)


def _styles(series: Iterable[Any]) -> dict[Any, dict[str, Any]]:
    """``{series: {"color", "marker"}}``: a distinct colour AND a distinct marker for every series
    (a pooling name or a (model, pooling) pair), in report order. tab10 for up to 10 series, tab20
    for up to 20, evenly spaced colours of ``turbo`` beyond."""
    plt = _pyplot()
    keys = sorted(set(series), key=_series_key)
    n = len(keys)
    if n <= 10:
        colors = [plt.get_cmap("tab10")(i) for i in range(n)]
    elif n <= 20:
        colors = [plt.get_cmap("tab20")(i) for i in range(n)]
    else:
        colors = [plt.get_cmap("turbo")(x) for x in np.linspace(0.05, 0.95, n)]
    return {k: {"color": colors[i], "marker": MARKERS[i % len(MARKERS)]} for i, k in enumerate(keys)}


def series_styles(runs: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    """The style of every (model, pooling) series of a report (:func:`_styles`), computed once from
    all its runs so that a series looks the same in every figure."""
    return _styles(zip(runs["model"], runs["pooling"], strict=True))


def _colors(series: Iterable[Any]) -> dict[Any, Any]:
    """``{series: colour}``, one distinct colour per series (:func:`_styles`)."""
    return {k: v["color"] for k, v in _styles(series).items()}


def _grid(n: int, plt, width: float = 4.6, height: float = 3.6):
    """A constrained-layout figure with ``n`` subplots, at most 3 per row."""
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 1.0),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _label(model: str, pooling: str, models: Sequence[str]) -> str:
    return pooling if len(models) == 1 else f"{model} / {pooling}"


def _legend_below(fig, handles: dict[str, Any], title: str | None = None) -> None:
    """A legend under the panels, with as many columns as fit the figure's width."""
    entry_width = 0.7 + 0.09 * max(len(label) for label in handles)  # inches, roughly
    ncol = max(1, min(len(handles), int(fig.get_figwidth() // entry_width)))
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=ncol, title=title)


def plot_low_resource(low: pd.DataFrame, path: Path, tasks: dict[str, TaskInfo],
                      full_sizes: dict[str, int], styles: dict | None = None) -> bool:
    """Score vs training-set size (log x), one subplot per task; False if there is no data.

    One line per model and pooling (its own colour and marker; line style per model) through the
    mean scores, with a band for the 95% confidence interval of each mean (Student t over seeds;
    none where n = 1). The full training set is the right-most point, placed at its size
    (``full_sizes``: the runs' ``n_train_full``, :func:`~maxpoolbert.report.stats.full_train_sizes`),
    or, unknown or not beyond the largest reduced size, at 4 times that size.
    """
    if low.empty or low["train_size"].notna().sum() == 0:
        return False
    plt = _pyplot()
    from matplotlib.ticker import NullLocator

    names = [t for t in tasks if t in set(low["task"])]
    models = sorted(set(low["model"]))
    styles = styles or _styles(zip(low["model"], low["pooling"], strict=True))
    linestyles = ["-", "--", ":", "-."]
    fig, axes = _grid(len(names), plt)
    handles = {}
    for ax, task in zip(axes, names, strict=True):
        sub = low[low["task"] == task]
        sizes = sorted(int(s) for s in sub["train_size"].dropna().unique())
        full_n = full_sizes.get(task)
        full_x = full_n if full_n is not None and full_n > sizes[-1] else sizes[-1] * 4
        lines = sorted(sub.groupby(["model", "pooling"]), key=lambda g: _series_key(g[0]))
        for (model, pooling), line in lines:
            line = _sort(line, ["train_size"])
            x = np.array([full_x if pd.isna(s) else int(s) for s in line["train_size"]])
            order = np.argsort(x)
            style = styles[(model, pooling)]
            label = _label(model, pooling, models)
            (handles[label],) = ax.plot(x[order], line["mean"].to_numpy()[order], marker=style["marker"],
                                        color=style["color"], markeredgecolor="black", markeredgewidth=0.5,
                                        linestyle=linestyles[models.index(model) % len(linestyles)])
            low_ci, high_ci = line["ci_low"].to_numpy()[order], line["ci_high"].to_numpy()[order]
            ok = np.isfinite(low_ci) & np.isfinite(high_ci)
            ax.fill_between(x[order], np.where(ok, low_ci, np.nan), np.where(ok, high_ci, np.nan),
                            color=style["color"], alpha=0.15, linewidth=0)
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
    _legend_below(fig, handles, "pooling" if len(models) == 1 else "model / pooling")
    benchmarks = "/".join(dict.fromkeys(tasks[t].benchmark_name for t in names))
    fig.suptitle(f"Low-resource {benchmarks}: mean dev score vs training-set size\n"
                 "(bands: 95% confidence interval of the mean over seeds)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_stability(runs: pd.DataFrame, cells: pd.DataFrame, path: Path, styles: dict | None = None) -> bool:
    """Every seed's score of the main-table cells as a point, beside the cell's mean and its 95%
    confidence interval (``cells``: :func:`~maxpoolbert.report.analysis.cell_table`), one subplot
    per task; False if there is no data.

    Failed (degenerate) seeds are red crosses; the majority-class score is a dashed line when it
    lies near the scores (otherwise its value is written in the title, to keep the points readable).
    """
    data = _scored(runs)
    data = data[in_main(data, main_sizes(runs))]
    if data.empty:
        return False
    plt = _pyplot()
    from matplotlib.lines import Line2D

    tasks = tasks_of(data)
    sizes = main_sizes(runs)
    models = sorted(set(data["model"]))
    styles = styles or series_styles(data)
    main_cells = cells[cells["table"] == MAIN].set_index(["model", "pooling", "task"])
    most = int(data.groupby("task")[["model", "pooling"]].apply(lambda g: len(g.drop_duplicates())).max())
    fig, axes = _grid(len(tasks), plt, width=max(4.8, 0.75 * most + 1.0), height=3.9)
    any_degenerate = any_majority = False
    for ax, task in zip(axes, list(tasks), strict=True):
        sub = data[data["task"] == task]
        groups = sorted(sub.groupby(["model", "pooling"]), key=lambda g: _series_key(g[0]))
        values = [g["score"].to_numpy() * 100 for _, g in groups]
        for i, ((model, pooling), g) in enumerate(groups):
            y = g["score"].to_numpy() * 100
            x = i - 0.12 + (np.linspace(-0.1, 0.1, len(y)) if len(y) > 1 else np.zeros(1))
            degen = g["degenerate"].fillna(False).to_numpy(dtype=bool)
            style = styles[(model, pooling)]
            ax.scatter(x[~degen], y[~degen], color=style["color"], marker=style["marker"], edgecolor="black",
                       linewidths=0.5, zorder=3, s=30)
            ax.scatter(x[degen], y[degen], color="red", marker="x", zorder=4, s=45)
            any_degenerate |= bool(degen.any())
            cell = main_cells.loc[(model, pooling, task)]
            if np.isfinite(cell["ci_low"]):
                ax.errorbar([i + 0.2], [cell["mean"]], yerr=[[cell["mean"] - cell["ci_low"]],
                                                             [cell["ci_high"] - cell["mean"]]],
                            color="black", capsize=4, linewidth=1.3, zorder=5)
            ax.scatter([i + 0.2], [cell["mean"]], color="black", marker="_", s=160, linewidths=2, zorder=6)
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
        ax.set_xticks(np.arange(len(groups)) + 0.04)
        ax.set_xticklabels([p if len(models) == 1 else f"{m} / {p}" for (m, p), _ in groups],
                           rotation=20 if len(models) == 1 else 35, ha="right",
                           fontsize=None if len(models) == 1 else 8)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        size = "" if sizes.get(task) is None else f", train size {sizes[task]:,}"
        ax.set_title(tasks[task].header + size + note, fontsize=10 if note or size else None)
        ax.set_xlabel("pooling" if len(models) == 1 else "model / pooling")
        ax.set_ylabel("dev score ×100")
        ax.grid(axis="y", alpha=0.3)
    legend = [Line2D([], [], marker="o", color="grey", markeredgecolor="black", linestyle="",
                     label="one seed"),
              Line2D([], [], marker="_", color="black", markersize=12, markeredgewidth=2, linestyle="-",
                     linewidth=1.3, label="mean, 95% CI")]
    if any_degenerate:
        legend.append(Line2D([], [], marker="x", color="red", linestyle="",
                             label="failed seed (≤ majority class)"))
    if any_majority:
        legend.append(Line2D([], [], color="grey", linestyle="--", label="majority-class score"))
    fig.legend(handles=legend, loc="outside lower center", ncol=len(legend))
    fig.suptitle("Seed stability of the main results\n(points: seeds; bars: mean and 95% CI, Student t)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _task_label(key: str, tasks: dict[str, TaskInfo], n_tasks: int) -> str:
    if key in tasks:
        return tasks[key].display_name
    name = next((f"{t.benchmark_name} avg" for t in tasks.values() if f"{t.benchmark}_avg" == key), key)
    return f"{name}\n({n_tasks} tasks)"


def plot_forest(comparisons: pd.DataFrame, path: Path, tasks: dict[str, TaskInfo],
                styles: dict | None = None) -> bool:
    """Forest plot of the paired differences against ``cls`` (``comparisons``:
    :func:`~maxpoolbert.report.analysis.comparison_table`): one panel per model and table (main
    results, each low-resource size), one row per task (benchmark averages last), one marker per
    pooling at the mean difference with its 95% bootstrap interval over seeds (thick) and, below it,
    over seeds and dev rows (thin, capped). False when there is nothing to draw."""
    data = comparisons[comparisons["mean_diff"].notna()]
    if data.empty:
        return False
    plt = _pyplot()
    from matplotlib.lines import Line2D

    styles = styles or _styles(zip(data["model"], data["pooling"], strict=True))
    poolings = sorted(set(data["pooling"]), key=pooling_key)
    key = data["table"].where(data["table"] == "main", data["table"] + data["train_size"].astype("string").fillna(""))
    panels = list(data.groupby([data["model"], key, data["baseline"]], sort=False))
    heights = [max(2.4, 0.42 * len(g) + 1.4) for _, g in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7.6, sum(heights) + 1.3), squeeze=False,
                             layout="constrained", gridspec_kw={"height_ratios": heights})
    models = sorted(set(data["model"]))
    any_two_level = False
    step = 0.8 / max(len(poolings), 1)
    for ax, ((model, _, baseline), group) in zip(axes[:, 0], panels, strict=True):
        names = list(dict.fromkeys(group["task"]))
        for r in group.itertuples():
            row = names.index(r.task)
            y = row - 0.4 + step * (poolings.index(r.pooling) + 0.5)
            style = styles[(r.model, r.pooling)]
            if np.isfinite(r.boot_low):
                ax.plot([r.boot_low, r.boot_high], [y, y], color=style["color"], linewidth=3.2, alpha=0.85,
                        solid_capstyle="butt", zorder=2)
            if np.isfinite(r.two_level_low):
                any_two_level = True
                ax.errorbar([r.mean_diff], [y + step * 0.3], xerr=[[r.mean_diff - r.two_level_low],
                                                                   [r.two_level_high - r.mean_diff]],
                            fmt="none", ecolor=style["color"], elinewidth=1.1, capsize=3, zorder=2)
            ax.scatter([r.mean_diff], [y], color=style["color"], marker=style["marker"], edgecolor="black",
                       linewidths=0.6, s=46, zorder=3)
        n_tasks = dict(zip(group["task"], group["n_tasks"], strict=True))
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([_task_label(t, tasks, int(n_tasks[t])) for t in names])
        ax.set_ylim(len(names) - 0.5, -0.5)
        for row in range(1, len(names)):
            ax.axhline(row - 0.5, color="lightgrey", linewidth=0.6)
        ax.axvline(0.0, color="black", linewidth=0.9)
        rope = group["rope"].dropna() if "rope" in group else pd.Series(dtype=float)
        if len(rope):
            ax.axvspan(-rope.iloc[0], rope.iloc[0], color="lightgrey", alpha=0.35, zorder=0, linewidth=0)
        first = group.iloc[0]
        where = "main results" if first["table"] == "main" else f"train size {int(first['train_size']):,}"
        where = f"{where}, against {baseline}"
        ax.set_title(f"{model}: {where}" if len(models) > 1 or len(panels) > 1 else where, fontsize=10)
        ax.set_xlabel(f"Δ dev score vs {baseline} (×100 points)")
        ax.grid(axis="x", alpha=0.3)
    shown = sorted(set(zip(data["model"], data["pooling"], strict=True)), key=_series_key)
    legend = [Line2D([], [], marker=styles[s]["marker"], color=styles[s]["color"], markeredgecolor="black",
                     linestyle="", label=_label(*s, models)) for s in shown]
    legend.append(Line2D([], [], color="grey", linewidth=3.2, label="95% CI, seeds"))
    if any_two_level:
        legend.append(Line2D([], [], color="grey", linewidth=1.1, marker="|", markersize=7,
                             label="95% CI, seeds × dev rows"))
    if "rope" in data and data["rope"].notna().any():
        from matplotlib.patches import Patch

        legend.append(Patch(color="lightgrey", alpha=0.6, label=f"±{data['rope'].dropna().iloc[0]:g}: equivalent"))
    _legend_below(fig, {h.get_label(): h for h in legend})
    fig.suptitle("Paired differences against the baseline (mean over shared seeds)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_budget(budget: pd.DataFrame, path: Path, tasks: dict[str, TaskInfo], styles: dict | None = None,
                held_out: bool = False) -> bool:
    """Expected best dev score vs the number of runs a search tries (``budget``:
    :func:`~maxpoolbert.report.analysis.budget_table`), one subplot per model, training-set size
    and task, one line per pooling (its own colour and marker); ``held_out``: the curves are the
    odd-index rows' score of the run chosen on the even-index rows, and the axis says so. False when
    there is no curve."""
    if budget.empty:
        return False
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    styles = styles or _styles(zip(budget["model"], budget["pooling"], strict=True))
    panels = list(budget.groupby(["model", "train_size", "task"], dropna=False, sort=False))
    models = sorted(set(budget["model"]))
    fig, axes = _grid(len(panels), plt)
    handles = {}
    for ax, ((model, size, task), group) in zip(axes, panels, strict=True):
        for pooling, line in sorted(group.groupby("pooling"), key=lambda g: pooling_key(g[0])):
            style = styles[(model, pooling)]
            (handles[_label(model, pooling, models)],) = ax.plot(line["budget"], line["expected_best"], marker=style["marker"],
                                          color=style["color"], markeredgecolor="black", markeredgewidth=0.5)
        size_text = "full" if pd.isna(size) else f"{int(size):,}"
        title = f"{tasks[task].header if task in tasks else task}, train size {size_text}"
        ax.set_title(title if len(models) == 1 else f"{model}: {title}", fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("runs tried (n)")
        ax.set_ylabel("expected odd-row score of the chosen run ×100" if held_out
                      else "expected best dev score ×100", fontsize=9 if held_out else None)
        ax.grid(alpha=0.3)
    key = budget["key"].iloc[0]
    _legend_below(fig, handles, "pooling" if len(models) == 1 else "model / pooling")
    how = ("odd-index dev rows' score of the run chosen on the even-index rows"
           if (budget["select_on"] == "half").all() else "maximum dev score")
    what = "expected held-out score of the run chosen among" if held_out else "expected best of"
    fig.suptitle(f"Search budget over {key}: {what} n runs tried at random\n"
                 f"(Tang et al. 2020, without replacement; {how})")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
