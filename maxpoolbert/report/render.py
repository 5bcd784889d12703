"""Writing the report: markdown, LaTeX and CSV tables, and :func:`write_report`."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from maxpoolbert.core.errors import write_failure
from maxpoolbert.core.metrics import SHORT_NAMES
from maxpoolbert.report import analysis
from maxpoolbert.report.analysis import Options
from maxpoolbert.report.collect import DEGENERATE_TOL, tasks_of
from maxpoolbert.report.plots import (
    plot_budget,
    plot_forest,
    plot_low_resource,
    plot_stability,
    series_styles,
)
from maxpoolbert.report.rows import noun as rows_noun
from maxpoolbert.report.stats import (
    BASELINE,
    MAIN,
    _sort,
    avg_key,
    benchmarks,
    degenerate_table,
    difference_table,
    full_train_sizes,
    in_main,
    low_resource_table,
    main_sizes,
    pooling_key,
    summary_table,
    table_columns,
)
from maxpoolbert.tasks.task import TaskInfo

DASH = "–"


# --------------------------------------------------------------------------- formatting


def fmt(x: float, signed: bool = False) -> str:
    """One decimal, ``–`` for NaN, no negative zero."""
    if x is None or pd.isna(x):
        return DASH
    x = round(float(x), 1) + 0.0
    return f"{x:+.1f}" if signed else f"{x:.1f}"


def fmt_p(p: float) -> str:
    if p is None or pd.isna(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def size_label(size: Any) -> str:
    return "full" if pd.isna(size) else str(int(size))


def cell_parts(stats_rows: pd.DataFrame, task: TaskInfo) -> tuple[str, str, int]:
    """``(means, stds, n)`` strings of one task cell from its summary rows."""
    by_metric = stats_rows.set_index("metric")
    means = "/".join(fmt(by_metric.at[m, "mean"]) for m in task.metrics)
    n = int(by_metric.at["score", "n"])
    stds = DASH if n < 2 else "/".join(fmt(by_metric.at[m, "std"]) for m in task.metrics)
    return means, stds, n


def main_table_columns(summary: pd.DataFrame, tasks: dict[str, TaskInfo]) -> tuple[list[str], list[str]]:
    """The main table's columns (task names and benchmark averages, :func:`table_columns`) for
    the tasks in ``summary``, and their headers: ``RTE (acc)``, ``GLUE avg``."""
    present = set(summary["task"])
    shown = {name: info for name, info in tasks.items() if name in present}
    names = {avg_key(t.benchmark): t.benchmark_name for t in shown.values()}
    columns = table_columns(shown)
    return columns, [shown[c].header if c in shown else f"{names[c]} avg" for c in columns]


def main_table_blocks(summary: pd.DataFrame, tasks: dict[str, TaskInfo]
                      ) -> tuple[list[str], dict[str, list[list[dict]]], bool]:
    """Lay the summary out as one block of rows per model.

    Returns the columns (:func:`main_table_columns`), ``{model: rows}`` where each row is a list
    of cell dicts (``means``, ``stds``, ``n``, ``bold``; the first is the pooling name) and
    whether rows cover different task sets. A row's benchmark average is marked with a dagger
    when the row lacks some of that benchmark's task columns; an average is bolded only among
    the model's rows that have all the model's tasks of that benchmark.
    """
    columns, _ = main_table_columns(summary, tasks)
    members = {avg_key(b): set(names) for b, names in benchmarks(
        {c: tasks[c] for c in columns if c in tasks}).items()}
    blocks: dict[str, list[list[dict]]] = {}
    mixed_sets = False
    for model, block in summary.groupby("model", sort=True):
        scores = block[block["metric"] == "score"]
        poolings = sorted(set(block["pooling"]), key=pooling_key)
        has = {p: set(scores.loc[scores["pooling"] == p, "task"]) for p in poolings}
        best, comparable = {}, {}
        for column in columns:
            if column in members:  # an average: compare rows with the same tasks of its benchmark
                block_tasks = set().union(*(has[p] & members[column] for p in poolings))
                comparable[column] = {p for p in poolings if has[p] & members[column] == block_tasks}
                col = scores[(scores["task"] == column) & scores["pooling"].isin(comparable[column])]
            else:
                col = scores[scores["task"] == column]
            if len(col) >= 2:
                best[column] = col["mean"].max()
        rows = []
        for pooling in poolings:
            mine = block[block["pooling"] == pooling]
            row = [{"text": pooling}]
            for column in columns:
                cell = mine[mine["task"] == column]
                if cell.empty:
                    row.append({"empty": True})
                    continue
                mean = cell.loc[cell["metric"] == "score", "mean"].iloc[0]
                bold = column in best and bool(np.isclose(mean, best[column]))
                if column in members:
                    partial = has[pooling] & members[column] != members[column]
                    mixed_sets |= partial
                    row.append({"means": fmt(mean), "stds": None, "n": int(cell["n"].iloc[0]),
                                "dagger": partial, "bold": bold and pooling in comparable[column]})
                else:
                    means, stds, n = cell_parts(cell, tasks[column])
                    row.append({"means": means, "stds": stds, "n": n, "bold": bold})
            rows.append(row)
        blocks[model] = rows
    return columns, blocks, mixed_sets


def render_cell(cell: dict, latex: bool = False) -> str:
    """Render a main-table cell as markdown or LaTeX."""
    if "text" in cell:
        return latex_escape(cell["text"]) if latex else f"`{cell['text']}`"
    if cell.get("empty"):
        return "--" if latex else DASH
    means = cell["means"]
    if cell["bold"]:
        means = f"\\textbf{{{means}}}" if latex else f"**{means}**"
    pm = " $\\pm$ " if latex else " ± "
    stds = cell["stds"]
    if stds is None:  # a benchmark average
        dagger = ("$^\\dagger$" if latex else " †") if cell.get("dagger") else ""
        return f"{means}{dagger}"
    if latex:
        stds = stds.replace(DASH, "--")
        return f"{means}{pm}{stds} ($n$={cell['n']})"
    return f"{means}{pm}{stds} (n={cell['n']})"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    """A GitHub markdown table; the first ``left`` columns left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] * left + ["---:"] * (len(header) - left)) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


LATEX_SPECIALS = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#",
                  "_": "\\_", "{": "\\{", "}": "\\}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials in plain text; map –, ±, Δ, ×, ε, < and > to their LaTeX forms."""
    out = "".join(LATEX_SPECIALS.get(ch, ch) for ch in str(text))
    for symbol, tex in ((DASH, "--"), ("±", "$\\pm$"), ("Δ", "$\\Delta$"), ("×", "$\\times$"),
                        ("<", "$<$"), ("ε\\_min", "$\\varepsilon_{\\min}$"), ("ε", "$\\varepsilon$"),
                        (">", "$>$")):
        out = out.replace(symbol, tex)
    return out


def latex_table(header: Sequence[str], blocks: Sequence[tuple[str | None, list[list[str]]]],
                caption: str, label: str, left: int = 1) -> str:
    """A booktabs table; ``blocks`` are (title, rows) separated by \\midrule. Cells are LaTeX.

    The first ``left`` columns are left-aligned, the rest right-aligned.
    """
    ncol = len(header)
    lines = ["\\begin{table}[t]", "\\centering", "\\small",
             "\\begin{tabular}{" + "l" * left + "r" * (ncol - left) + "}", "\\toprule",
             " & ".join(latex_escape(h) for h in header) + " \\\\", "\\midrule"]
    for i, (title, rows) in enumerate(blocks):
        if i:
            lines.append("\\midrule")
        if title is not None:
            lines.append(f"\\multicolumn{{{ncol}}}{{l}}{{\\textit{{{latex_escape(title)}}}}} \\\\")
        lines += [" & ".join(row) + " \\\\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}", f"\\label{{{label}}}",
              "\\end{table}", ""]
    return "\n".join(lines)


def _stat_cell(mean: float, std: float, n: int) -> str:
    return f"{fmt(mean)} ± {fmt(std) if n >= 2 else DASH} (n={n})"


# --------------------------------------------------------------------------- writers


def _and(names: Sequence[str]) -> str:
    """``GLUE``, ``GLUE and SuperGLUE``, ``GLUE, SuperGLUE and Custom``."""
    names = list(names)
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]])) if names else ""


def benchmark_names(tasks: dict[str, TaskInfo]) -> str:
    return _and(list(dict.fromkeys(t.benchmark_name for t in tasks.values())))


def multi_metric_note(tasks: dict[str, TaskInfo]) -> str:
    """The tasks with several metrics and their labels: ``MRPC/QQP: F1/acc, STS-B: P/S``."""
    by_label: dict[str, list[str]] = {}
    for t in tasks.values():
        if len(t.metrics) > 1:
            by_label.setdefault(t.label, []).append(t.display_name)
    return ", ".join(f"{'/'.join(names)}: {label}" for label, names in by_label.items())


def metric_legend(tasks: dict[str, TaskInfo]) -> str:
    """What the short metric names in the headers stand for: ``acc = accuracy, P = pearson``."""
    keys = dict.fromkeys(m for t in tasks.values() for m in t.metrics)
    return ", ".join(f"{SHORT_NAMES[m]} = {m}" for m in keys if SHORT_NAMES.get(m, m) != m)


def main_table_markdown(summary: pd.DataFrame, tasks: dict[str, TaskInfo]) -> str:
    if summary.empty:
        return "_No full-training-set runs._"
    columns, blocks, mixed = main_table_blocks(summary, tasks)
    header = ["Pooling", *main_table_columns(summary, tasks)[1]]
    parts = []
    for model, rows in blocks.items():
        parts.append(f"### Model `{model}`\n\n"
                     + markdown_table(header, [[render_cell(c) for c in r] for r in rows]))
    if mixed:
        names = ", ".join(tasks[c].display_name for c in columns if c in tasks)
        parts.append(f"† Rows cover different task sets: a benchmark average marked † is over only "
                     f"the tasks of that benchmark the row has (columns: {names}); averages are "
                     f"bolded only against rows of the same model with the same tasks.")
    return "\n\n".join(parts)


def main_table_latex(summary: pd.DataFrame, tasks: dict[str, TaskInfo], scope: str = "") -> str:
    _, blocks, mixed = main_table_blocks(summary, tasks)
    header = ["Pooling", *main_table_columns(summary, tasks)[1]]
    shown = {n: t for n, t in tasks.items() if n in set(summary["task"])}
    note = multi_metric_note(shown)
    caption = (f"{latex_escape(benchmark_names(shown))} dev results ($\\times$100), mean $\\pm$ "
               f"sample std over seeds ($n$ seeds). {latex_escape(note) + '. ' if note else ''}"
               "Bold: best mean per column." + (f" {scope}" if scope else ""))
    if mixed:
        caption += " $^\\dagger$Average over the benchmark's tasks the row has."
    return latex_table(header, [(m, [[render_cell(c, latex=True) for c in r] for r in rows])
                                for m, rows in blocks.items()], caption, "tab:glue-main")


def _difference_rows(diff: pd.DataFrame, tasks: dict[str, TaskInfo], latex: bool = False) -> list[list[str]]:
    rows = []
    for _, r in diff.iterrows():
        cells = [r["model"], size_label(r["train_size"]), tasks[r["task"]].display_name, r["pooling"],
                 fmt(r["mean_diff"], signed=True), str(r["n_pairs"]), fmt_p(r["ttest_p"]),
                 fmt_p(r["wilcoxon_p"])]
        if latex:
            cells = [latex_escape(c) for c in cells]
        else:
            cells[3] = f"`{cells[3]}`"
        rows.append(cells)
    return rows


DIFF_HEADER = ["Model", "Train size", "Task", "Pooling", f"Δ vs {BASELINE} (×100)", "Pairs",
               "t-test p", "Wilcoxon p"]


def _low_resource_wide(low: pd.DataFrame, tasks: dict[str, TaskInfo], markdown: bool = True) -> tuple[list[str], list[list[str]]]:
    """Low-resource table laid out wide: one row per model, task, pooling; one column per size."""
    sizes = sorted({int(s) for s in low["train_size"].dropna()})
    has_full = low["train_size"].isna().any()
    header = ["Model", "Task", "Pooling", *(f"{s:,}" for s in sizes), *(["full"] if has_full else [])]
    rows = []
    for (model, task, pooling), g in _sort(low, ["model", "task", "pooling"], tasks).groupby(
            ["model", "task", "pooling"], sort=False):
        cells = {size_label(r["train_size"]): _stat_cell(r["mean"], r["std"], r["n"])
                 for _, r in g.iterrows()}
        rows.append([model, tasks[task].display_name, f"`{pooling}`" if markdown else pooling,
                     *(cells.get(str(s), DASH) for s in sizes),
                     *([cells.get("full", DASH)] if has_full else [])])
    return header, rows


def _degenerate_markdown(degen: pd.DataFrame, tasks: dict[str, TaskInfo]) -> str:
    if degen.empty:
        return "_No runs._"
    columns = [t for t in tasks if t in set(degen["task"])]
    rows = []
    for (model, size, pooling), g in degen.groupby(["model", "train_size", "pooling"],
                                                   dropna=False, sort=False):
        cells = {}
        for _, r in g.iterrows():
            unknown = r["n_runs"] - r["n_known"]
            cells[r["task"]] = f"{r['n_degenerate']}/{r['n_runs']}" + (
                f" ({unknown} unknown)" if unknown else "")
            if "n_collapsed" in r and r["n_collapsed"] > 0:
                cells[r["task"]] += (f"; collapsed {r['n_collapsed']}, {100 * r['collapse_rate']:.0f}% "
                                     f"[{100 * r['collapse_low']:.0f}, {100 * r['collapse_high']:.0f}]")
        rows.append([model, size_label(size), f"`{pooling}`", *(cells.get(t, DASH) for t in columns)])
    return markdown_table(["Model", "Train size", "Pooling", *(tasks[t].display_name for t in columns)], rows,
                          left=3)


# --------------------------------------------------------------------------- issue 20: intervals, comparisons


def fmt_interval(low: float, high: float, signed: bool = False) -> str:
    """``[60.1, 64.5]`` (one decimal), ``–`` when undefined."""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return DASH
    return f"[{fmt(low, signed)}, {fmt(high, signed)}]"


def fmt_ratio(x: float) -> str:
    return DASH if x is None or pd.isna(x) else f"{x:.2f}"


def _task_name(key: str, tasks: dict[str, TaskInfo]) -> str:
    if key in tasks:
        return tasks[key].display_name
    return next((f"{t.benchmark_name} avg" for t in tasks.values() if avg_key(t.benchmark) == key), key)


def main_size_note(runs: pd.DataFrame, tasks: dict[str, TaskInfo]) -> str | None:
    """Which tasks' main-table cells are on a reduced training set (none: None)."""
    reduced = {t: s for t, s in main_sizes(runs).items() if s is not None}
    if not reduced:
        return None
    text = _and([f"{tasks[t].display_name} {reduced[t]:,}" for t in tasks if t in reduced])
    rest = "; the other tasks: their full training sets" if len(reduced) < len(tasks) else ""
    return f"Training-set sizes here: {text} rows{rest}."


def _true(flag: Any) -> bool:
    return not pd.isna(flag) and bool(flag)


def _ci_cell(r, latex: bool = False) -> str:
    text = f"{fmt(r.mean)} {fmt_interval(r.ci_low, r.ci_high)}"
    notes = []
    if r.n_failed:
        notes.append(f"{r.n_failed} failed")
    if _true(r.at_chance):
        notes.append("at chance")
    if notes:
        text += f" ({', '.join(notes)})"
    return latex_escape(text) if latex else text


def ci_table(cells: pd.DataFrame, tasks: dict[str, TaskInfo], latex: bool = False
             ) -> tuple[list[str], list[list[str]]]:
    """The main table's cells as ``mean [95% CI] (k failed, at chance)`` (task score ×100): header
    and rows (model, pooling, one column per task)."""
    main = cells[cells["table"] == MAIN]
    columns = [t for t in tasks if t in set(main["task"])]
    header = ["Model", "Pooling", *(tasks[t].display_name for t in columns)]
    rows = []
    for model, block in main.groupby("model", sort=True):
        for pooling in sorted(set(block["pooling"]), key=pooling_key):
            mine = {r.task: r for r in block[block["pooling"] == pooling].itertuples()}
            name = latex_escape(pooling) if latex else f"`{pooling}`"
            rows.append([latex_escape(model) if latex else model, name,
                         *(_ci_cell(mine[t], latex) if t in mine else ("--" if latex else DASH) for t in columns)])
    return header, rows


def _group_title(model: str, table: str, size: Any, baseline: str) -> str:
    where = f"{model}, main results" if table == MAIN else f"{model}, train size {size_label(size)}"
    return f"{where}: against `{baseline}`"


def _groups(comparisons: pd.DataFrame):
    """(title, rows) per model, table (main; each low-resource size) and baseline arm, in report order."""
    key = comparisons["table"].where(comparisons["table"] == MAIN,
                                     comparisons["table"] + comparisons["train_size"].astype("string").fillna(""))
    for _, group in comparisons.groupby([comparisons["model"], key, comparisons["baseline"]], sort=False):
        first = group.iloc[0]
        yield _group_title(first["model"], first["table"], first["train_size"], first["baseline"]), group


def _seeds_needed(value, defined: bool) -> str:
    if not pd.isna(value):
        return f"{int(value):,}"
    return "never" if defined else DASH


def _comparison_task(r, tasks: dict[str, TaskInfo]) -> str:
    name = _task_name(r.task, tasks)
    return f"{name} ({r.n_tasks} tasks)" if r.n_tasks > 1 else name


def comparison_header(latex: bool = False) -> list[str]:
    if latex:
        return ["Compared", "Task", "n", "Δ", "95% CI seeds", "95% CI seeds × rows", "Holm p", "ε_min", "Verdict"]
    return ["Compared", "Task", "n", "Δ", "95% CI seeds", "95% CI seeds × rows", "p", "Holm p", "Wilcoxon p",
            "P(>base)", "ε_min →", "ε_min ←", "Verdict"]


def _verdict_cell(r) -> str:
    basis = "" if r.verdict_basis == "seeds × rows" else " (seeds)"
    return f"{r.verdict}{basis}"


def comparison_rows(group: pd.DataFrame, tasks: dict[str, TaskInfo], latex: bool = False) -> list[list[str]]:
    rows = []
    for r in group.itertuples():
        base = [r.pooling, _comparison_task(r, tasks), str(r.n_pairs), fmt(r.mean_diff, signed=True),
                fmt_interval(r.boot_low, r.boot_high, signed=True),
                fmt_interval(r.two_level_low, r.two_level_high, signed=True)]
        if latex:
            cells = [*base, fmt_p(r.holm_p), fmt_ratio(r.aso_eps_min), _verdict_cell(r)]
            rows.append([latex_escape(c) for c in cells])
        else:
            base[0] = f"`{base[0]}`"
            rows.append([*base, fmt_p(r.perm_p), fmt_p(r.holm_p), fmt_p(r.wilcoxon_p), fmt_ratio(r.prob_better),
                         fmt_ratio(r.aso_eps_min), fmt_ratio(r.aso_eps_min_reverse), _verdict_cell(r)])
    return rows


def power_header(effect: float) -> list[str]:
    return ["Compared", "Task", "n", "Rows", "Detects (seeds)", "Detects (seeds + rows)", "Floor (any n)",
            f"Seeds for {effect:g} pt (seeds)", f"Seeds for {effect:g} pt (seeds + rows)"]


def power_rows(group: pd.DataFrame, tasks: dict[str, TaskInfo]) -> list[list[str]]:
    rows = []
    for r in group.itertuples():
        with_rows = not pd.isna(r.row_sd)
        rows.append([f"`{r.pooling}`", _comparison_task(r, tasks), str(r.n_pairs),
                     DASH if pd.isna(r.n_rows) else f"{int(r.n_rows):,}", fmt(r.min_detectable),
                     fmt(r.detectable_rows), fmt(r.detectable_floor),
                     _seeds_needed(r.seeds_needed, not pd.isna(r.std_diff)) if not pd.isna(r.seeds_needed)
                     else (DASH if pd.isna(r.std_diff) else "> 10,000"),
                     _seeds_needed(r.seeds_needed_rows, with_rows and not pd.isna(r.std_diff))])
    return rows


def factor_sections(comparisons: pd.DataFrame):
    """(factor, baseline value, rows) per compared factor, in the order given."""
    for factor, group in comparisons.groupby("factor", sort=False):
        yield factor, group["baseline_value"].iloc[0], group


def comparisons_markdown(comparisons: pd.DataFrame, tasks: dict[str, TaskInfo], effect: float) -> list[str]:
    parts = []
    for title, group in _groups(comparisons):
        parts.append(f"### {title}")
        parts.append(markdown_table(comparison_header(), comparison_rows(group, tasks), left=2))
        parts.append("Power of the comparisons above (scores ×100; rows: the evaluation rows each seed was "
                     "scored on):")
        parts.append(markdown_table(power_header(effect), power_rows(group, tasks), left=2))
    return parts


def comparisons_explained(options: Options, effect: float) -> str:
    noun = rows_noun(options.rows)
    rows = f"the odd-index {noun} (the reported ones)" if options.half else f"the {noun}"
    level = f"{1 - analysis.ALPHA:.0%}"
    lines = [
        "Every compared arm against the factor's baseline on the seeds both have (n pairs; scores ×100), every "
        "other factor held fixed. Columns:",
        "- Δ: the mean paired difference (compared − baseline).",
        f"- 95% CI seeds: percentile bootstrap over the paired seeds (B = {options.bootstrap:,}, seed "
        f"{analysis.BOOT_SEED}).",
        f"- 95% CI seeds × rows: bootstrap of seeds and of {rows} at once, the task metric recomputed from the "
        "runs' predictions on them; one row sample per replicate, shared by every seed, since every seed was scored "
        "on the same rows (`–` where the predictions are missing, and for averages).",
        f"- p: paired permutation test, two-sided (exact for up to {analysis.EXACT_MAX_N} pairs). Holm p: Holm's "
        "adjustment of p over the tasks of the table, per compared arm (a benchmark average is one more test, "
        "left unadjusted: `–`). Wilcoxon p: signed-rank test.",
        "- P(>base): the fraction of paired seeds where the compared arm scores higher (ties count ½).",
        f"- ε_min →: Almost Stochastic Order's minimal violation ratio at α = {analysis.ALPHA:g}, Bonferroni over "
        "the tasks of the table: below 0.5 the compared arm is almost stochastically better than the baseline "
        "(0.2 is a strict threshold); 1.0 means it is not shown better, which is not the same as worse. ε_min ←: "
        "the same question the other way round (is the baseline better?).",
        f"- Verdict, from the {level} seeds × rows interval (the one that counts the dev rows' noise; `(seeds)` "
        "marks a comparison without predictions, e.g. an average, judged on the seeds' interval), Holm-adjusted "
        f"over the tasks of the table (step-down: the k-th most significant of m at level 1 − {analysis.ALPHA:g}/(m − "
        "k + 1)): **better** / **worse** when the interval excludes 0, **equivalent** when it lies within "
        f"±{options.rope:g} point{'s' if options.rope != 1 else ''} (`--rope`), **undecided** otherwise. "
        "`comparisons.csv` holds the interval (`verdict_low`, `verdict_high`) and its level.",
        f"- Power (the second table): Detects (seeds) is the smallest difference the n seeds detect with "
        f"{analysis.POWER:.0%} power (two-sided paired t-test at α = {analysis.ALPHA:g}, the observed std of the "
        "differences) as if the rows added no noise; Detects (seeds + rows) adds the evaluation rows' standard "
        "error, which more seeds do not shrink (every seed is scored on the same rows; normal approximation); "
        f"Floor is that with infinitely many seeds. Seeds for {effect:g} pt: the paired seeds needed to detect "
        f"{analysis._points(effect)} each way (`never`: below the floor).",
        f"- In words, beside each verdict: the Bayesian signed-rank test over the paired seeds (Benavoli et al., "
        f"`baycomp`; {analysis.BAYES_SAMPLES:,} posterior draws, seed {analysis.BOOT_SEED}) with the same ±"
        f"{options.rope:g}: the probabilities that the arm is worse, practically equivalent, better (seeds only).",
        "- A benchmark average is compared on the seeds that all its tasks share for both arms: per seed, "
        "the mean of the task scores; its bootstrap resamples those seeds (paired).",
        "",
        "`–`: undefined (fewer than 2 pairs, or all differences zero). Every number is in `comparisons.csv`; "
        "the paired t-test stays in `differences.csv`.",
    ]
    return "\n".join(lines)


def verdict_sentences(comparisons: pd.DataFrame, tasks: dict[str, TaskInfo], rope: float) -> list[str]:
    """The verdicts in words, one line per comparison of the main table."""
    out = []
    for r in comparisons[comparisons["table"] == MAIN].itertuples():
        name = _task_name(r.task, tasks)
        interval = fmt_interval(r.verdict_low, r.verdict_high, signed=True)
        level = DASH if pd.isna(r.verdict_level) else f"{r.verdict_level:.2%}".replace(".00%", "%")
        why = {"better": "the interval excludes 0", "worse": "the interval excludes 0",
               "equivalent": f"the interval lies within ±{rope:g}",
               "undecided": f"the interval neither excludes 0 nor lies within ±{rope:g}"}[r.verdict]
        chance = []
        if _true(r.at_chance_pooling):
            chance.append(f"`{r.pooling}`")
        if _true(r.at_chance_baseline):
            chance.append(f"`{r.baseline}`")
        flag = (f"; at chance: {_and(chance)} (its interval reaches the majority-class score)" if chance else "")
        basis = r.verdict_basis
        bayes = ("" if pd.isna(r.bayes_better) else
                 f"; Bayesian signed-rank P(worse, equivalent, better) = ({r.bayes_worse:.2f}, "
                 f"{r.bayes_equivalent:.2f}, {r.bayes_better:.2f})")
        out.append(f"`{r.pooling}` vs `{r.baseline}` on {name} ({r.model}): **{r.verdict}** — Δ "
                   f"{fmt(r.mean_diff, signed=True)}, {basis} interval {interval} at level {level}: {why}{flag}{bayes}.")
    return out


def verdict_counts(comparisons: pd.DataFrame) -> str:
    main = comparisons[comparisons["table"] == MAIN]
    counts = main["verdict"].value_counts()
    return ", ".join(f"{int(counts.get(v, 0))} {v}" for v in ("better", "worse", "equivalent", "undecided"))


def power_lines(comparisons: pd.DataFrame, tasks: dict[str, TaskInfo], effect: float) -> list[str]:
    """What each main-table comparison's seeds detect, with and without the rows' noise, and the floor
    no number of seeds goes below with these evaluation rows."""
    out = []
    for r in comparisons[comparisons["table"] == MAIN].itertuples():
        name = _task_name(r.task, tasks)
        text = analysis.S.power_sentence(int(r.n_pairs), r.std_diff, effect, alpha=analysis.ALPHA,
                                         power=analysis.POWER)
        if not pd.isna(r.detectable_floor):
            need = r.seeds_needed_rows
            rows = f"{int(r.n_rows):,} rows" if not pd.isna(r.n_rows) else "these rows"
            text += (f" (seeds alone). With the rows' noise: {r.n_pairs} seeds detect {fmt(r.detectable_rows)} points; "
                     f"with these {rows}, no number of seeds detects less than {fmt(r.detectable_floor)} points"
                     + (f"; {analysis._points(effect)} would need {int(need):,} seeds" if not pd.isna(need)
                        else f", so {analysis._points(effect)} cannot be detected on them"))
        out.append(f"`{r.pooling}` − `{r.baseline}` on {name} ({r.model}): {text}.")
    return out


BUDGET_SHOWN = (1, 2, 4, 8, 16, 32, 64)


def budget_markdown(budget: pd.DataFrame, tasks: dict[str, TaskInfo]) -> str:
    top = int(budget["n_runs"].max())
    shown = [b for b in BUDGET_SHOWN if b < top]
    header = ["Model", "Train size", "Task", "Pooling", "Runs", *(f"n={b}" for b in shown), "all runs"]
    rows = []
    for (model, size, task, pooling), g in budget.groupby(["model", "train_size", "task", "pooling"],
                                                          dropna=False, sort=False):
        curve = dict(zip(g["budget"], g["expected_best"], strict=True))
        n = int(g["n_runs"].iloc[0])
        rows.append([model, size_label(size), _task_name(task, tasks), f"`{pooling}`", str(n),
                     *(fmt(curve[b]) if b <= n else DASH for b in shown), fmt(curve[n])])
    return markdown_table(header, rows, left=4)


def protocol_markdown(lines: list[str]) -> str:
    return "\n".join(lines)


def source_label(source: str) -> str:
    """The ``--runs`` folder as the report names it: as given when relative; an absolute one
    relative to the working folder when below it, else by its last part (no machine path)."""
    if source.startswith("wandb:"):
        return source
    path = Path(source)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return f"…/{path.name}"


# --------------------------------------------------------------------------- the files

# Every file the report writes: it owns these names in its output folder, so a file a new report does
# not make (selection.csv without --select, budget.csv, a plot with nothing to draw) is removed, never
# left behind from an older report. Other files there (docs/results/README.md, runs/) are not touched.
REPORT_FILES = ("results.md", "results.tex", "results.csv", "cells.csv", "comparisons.csv", "comparisons_dev.csv",
                "differences.csv",
                "low_resource.csv", "degenerate.csv", "skipped.csv", "selection.csv", "budget.csv",
                "low_resource.png", "stability.png", "forest.png", "budget.png")
SIGNIFICANT = 7   # significant digits of every float in the CSVs (see write_csv)


def _round(value: Any) -> Any:
    if isinstance(value, float | np.floating) and np.isfinite(value):
        return float(f"{float(value):.{SIGNIFICANT}g}")
    return value


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every float to :data:`SIGNIFICANT` significant digits: values that differ in
    their last bits (another CPU's or BLAS's rounding: relative differences around 1e-15) become the
    same number, so the CSVs and the words made from them are the same bytes. A value whose 7th digit
    sits exactly on a rounding boundary could still flip; at a relative noise of 1e-13 that is about
    one number in five million."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype.kind == "f":
            out[column] = np.array([_round(v) for v in out[column]], dtype=out[column].dtype)
        elif out[column].dtype == object:
            out[column] = [_round(v) for v in out[column]]
    return out


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """A table as CSV (its floats :func:`rounded`)."""
    rounded(frame).to_csv(path, index=False)


def write_report(runs: pd.DataFrame, skipped: list[dict[str, str]], out: Path, source: str,
                 preface: Sequence[str] = (), options: Options | None = None,
                 selection_table: pd.DataFrame | None = None, candidates: pd.DataFrame | None = None) -> None:
    """Compute every table and plot and write all report files into ``out``; ``preface``:
    markdown sections put before the main results (the model selection, when there is one);
    ``options``: the analysis options and the run folders' root (:class:`analysis.Options`);
    ``selection_table`` and ``candidates``: ``--select``'s table and every candidate run (the
    search budget).

    The files are made in a staging folder inside ``out`` and moved into place only once all of
    them are written: a report that fails (a full disk: :class:`~maxpoolbert.core.errors.WriteFailed`)
    or is killed leaves the previous report whole. The report owns :data:`REPORT_FILES` in ``out``."""
    options = options or Options()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    try:
        _write_files(runs, skipped, staging, source, preface, options, selection_table, candidates)
        for name in REPORT_FILES:
            if (staging / name).exists():
                os.replace(staging / name, out / name)
            else:
                (out / name).unlink(missing_ok=True)
    except OSError as err:
        failed = write_failure(out, err)
        if failed is None:
            raise
        raise failed from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_files(runs: pd.DataFrame, skipped: list[dict[str, str]], out: Path, source: str,
                 preface: Sequence[str], options: Options, selection_table: pd.DataFrame | None,
                 candidates: pd.DataFrame | None) -> None:
    tasks = tasks_of(runs)
    summary = rounded(summary_table(runs, tasks))
    diff = rounded(difference_table(runs))
    low = rounded(low_resource_table(runs))
    degen = rounded(degenerate_table(runs))
    cells = rounded(analysis.cell_table(runs, tasks))
    comparisons = analysis.comparison_table(runs, tasks, options)
    comp = rounded(comparisons.table)
    comp_dev = None
    if options.rows == "heldout" and "dev_score" in runs:  # the same comparisons on the official dev set
        on_dev = runs.assign(score=runs["dev_score"])
        comp_dev = rounded(analysis.comparison_table(on_dev, tasks, dataclasses.replace(options, rows="dev")).table)
    runs = runs.assign(score=rounded(runs[["score"]])["score"])
    budget = None
    if options.select is not None and candidates is not None and not candidates.empty:
        budget = rounded(analysis.budget_table(candidates, options.select, options.select_on, tasks))
    skipped_df = pd.DataFrame(skipped, columns=["path", "reason"])

    write_csv(summary, out / "results.csv")
    write_csv(diff, out / "differences.csv")
    write_csv(low, out / "low_resource.csv")
    write_csv(degen, out / "degenerate.csv")
    write_csv(skipped_df, out / "skipped.csv")
    write_csv(cells, out / "cells.csv")
    write_csv(comp, out / "comparisons.csv")
    if comp_dev is not None:
        write_csv(comp_dev, out / "comparisons_dev.csv")
    if budget is not None:
        write_csv(budget, out / "budget.csv")
    if selection_table is not None:
        write_csv(rounded(selection_table), out / "selection.csv")

    plots = {}
    styles = series_styles(runs)  # one colour and marker per (model, pooling), the same in every figure
    for name, plot in (("low_resource.png",
                        lambda path: plot_low_resource(low, path, tasks, full_train_sizes(runs), styles)),
                       ("stability.png", lambda path: plot_stability(runs, cells, path, styles)),
                       ("forest.png", lambda path: plot_forest(comp, path, tasks, styles)),
                       ("budget.png", lambda path: budget is not None and plot_budget(
                           budget, path, tasks, styles, held_out=options.half))):
        plots[name] = plot(out / name)
        if not plots[name]:
            (out / name).unlink(missing_ok=True)

    several, legend = multi_metric_note(tasks), metric_legend(tasks)
    averages = _and([f"{name} avg" for name in dict.fromkeys(t.benchmark_name for t in tasks.values())])
    size_note = main_size_note(runs, tasks)
    rows_note = _rows_note(options)
    md = [
        f"# {benchmark_names(tasks) or 'Benchmark'} results",
        f"Source: `{source_label(source)}` — {len(runs)} run(s) used, {len(skipped)} skipped (see the end).",
        "## Protocol",
        protocol_markdown(analysis.protocol(runs, skipped, options, selection_table, candidates)),
        f"All numbers are {'held-out' if options.rows == 'heldout' else 'dev-set'} scores ×100. Cells: mean ± "
        "sample std over seeds (ddof=1; `–` when "
        "n=1) with the number of seeds n."
        + (f" Tasks with several metrics show each with its own std ({several})." if several else "")
        + (f" Metrics: {legend}." if legend else "")
        + " Bold: best mean task score (mean of the task's metrics) per column within a model. "
        f"Benchmark averages ({averages}): the mean over the benchmark's tasks of the per-task mean "
        "score." + rows_note,
        *preface,
        "## Main results",
        "Each task on its full training set (a task without runs on it: at its largest `train_size`); its "
        "other training-set sizes are in the low-resource section. A cell's runs share one `settings_id`; of "
        "two runs with its settings and the same seed (a duplicate seed), the newest results.json is kept." + (f" {size_note}" if size_note else ""),
        main_table_markdown(summary, tasks),
    ]
    if options.rows == "heldout" and "dev_score" in runs:
        md += ["### The official dev set, beside",
               "Dev score ×100 of the same runs (mean ± std over seeds): the conventional number. No choice "
               "above used it.", dev_beside(rounded(runs[["model", "pooling", "task", "train_size", "dev_score"]]), tasks)]
    if comp_dev is not None and not comp.empty:
        md += ["### Every comparison on both sets of rows",
               "Δ ×100 (compared − baseline) with its 95% seeds × rows interval (`(seeds)`: the seeds' interval, for "
               "averages) and the verdict, on the held-out "
               "rows (the report's numbers) and on the official dev set (`comparisons_dev.csv`: the same "
               "comparisons with the dev rows' noise).", both_rows_table(comp, comp_dev, tasks)]
    header, rows = ci_table(cells, tasks)
    if rows:
        md += ["### Confidence intervals, failed runs and cells at chance",
               "Task score ×100 per cell: mean [95% confidence interval of the mean, Student t over seeds; `–` "
               "when n=1]; the failed runs, which stay in every number: on the rows reported, a score at or below "
               f"the majority-class score + {DEGENERATE_TOL:g} on those rows, a non-finite score, or one prediction "
               "on every row; and **at chance** where the majority-class score lies within (or above) the cell's "
               "interval: such a cell cannot show a difference between poolings. Median, min, max, the "
               "majority-class score and the counts of every cell, the low-resource ones included, are in "
               "`cells.csv`.",
               markdown_table(header, rows, left=2)]
    factor_list = [f for f, _ in options.factors]
    if comp.empty:
        md.append("## Comparisons")
        wanted = ", ".join(f"`{f}` (baseline `{_shown_baseline(f, b)}`)" for f, b in options.factors)
        md.append(f"_No pair of cells differs only in one compared factor with one of them at its baseline value: "
                  f"{wanted}._")
    else:
        md.append("## Comparisons")
        md.append(comparisons_explained(options, options.effect))
        for factor, base_value, group in factor_sections(comp):
            md.append(f"## Comparisons along `{factor}` (baseline `{base_value}`)")
            md.append(f"Verdicts (main table): {verdict_counts(group)}.")
            md += comparisons_markdown(group, tasks, options.effect)
            words = verdict_sentences(group, tasks, options.rope)
            if words:
                md += ["### In words", "\n".join(f"- {line}" for line in words)]
            power = power_lines(group, tasks, options.effect)
            if power:
                md += ["### Power", f"With {analysis.POWER:.0%} power at α = {analysis.ALPHA:g}, from the observed "
                       "spread of the paired differences over seeds and, where the predictions are at hand, "
                       "of the evaluation rows:",
                       "\n".join(f"- {line}" for line in power)]
        missing = [f for f in factor_list if f not in set(comp["factor"])]
        for factor in missing:
            md.append(f"## Comparisons along `{factor}`")
            md.append("_No pair of cells differs only in this factor with one of them at its baseline value._")
        md += [f"Note: {note}" for note in comparisons.notes]
        if plots["forest.png"]:
            md.append("![Paired differences against the baseline with their 95% intervals](forest.png)")
    if budget is not None:
        md += ["## Search budget",
               (f"Expected held-out score ×100 of the run a search chooses when it tries n of a cell's runs (a run: "
                f"one value of `{options.select}` with one seed) drawn at random without replacement: the run with "
                "the best even-index dev score is chosen and its odd-index score counts (Tang et al.'s 2020 "
                "estimator). It may fall as n grows: a larger search can choose on noise."
                if options.half else
                f"Expected best dev score ×100 of a search that tries n of a cell's runs (a run: one value of "
                f"`{options.select}` with one seed), drawn at random without replacement, by Tang et al.'s (2020) "
                "unbiased estimator of the expected maximum.")
               + " Compare poolings at equal n. Every curve is in `budget.csv`.",
               budget_markdown(budget, tasks)]
        if plots["budget.png"]:
            md.append("![Expected score of the chosen run vs runs tried](budget.png)")
    md.append("## Low-resource results")
    if low.empty:
        md.append("_No runs with a reduced train_size: table and plot skipped._" if runs["train_size"].isna().all()
                  else "_No task has runs at several training-set sizes (each task's one size is in the main "
                       "results): table and plot skipped._")
    else:
        md.append("Mean dev score ×100 ± std over seeds by number of training examples; the plot's bands are "
                  "the 95% confidence intervals of the means.")
        md.append(markdown_table(*_low_resource_wide(low, tasks), left=3))
        md.append("![Score vs training-set size](low_resource.png)")
    md.append("## Seed stability")
    if plots["stability.png"]:
        md.append("![Spread of scores over seeds](stability.png)")
    else:
        md.append("_No main-table runs: stability plot skipped._")
    md.append(f"Failed runs (on the rows reported: score ≤ majority-class score + {DEGENERATE_TOL:g}, a "
              "non-finite score, or one prediction on every row; without a majority score and without "
              "predictions: unknown), as failed/runs per cell; where runs collapsed (failed, or scored "
              "below half-way from chance to the median run of the task, all arms together), their number "
              "and the collapse rate with its 95% Wilson interval:")
    md.append(_degenerate_markdown(degen, tasks))
    md.append("## Skipped runs")
    md.append(markdown_table(["Path", "Reason"], [[f"`{s['path']}`", s["reason"]] for s in skipped],
                             left=2)
              if skipped else "None.")
    (out / "results.md").write_text("\n\n".join(md) + "\n", encoding="utf-8")

    scope = latex_escape((size_note + " " if size_note else "")
                         + ({(False, False): "Scores on the full dev sets.",
                             (True, False): "Scores on the odd-index dev rows; the even ones chose the selected value.",
                             (False, True): "Scores on held-out training rows no run trained on.",
                             (True, True): "Scores on the odd-index held-out training rows; the even ones chose the "
                                           "selected value."}[(options.half, options.rows == "heldout")]))
    tex = ["% Generated by python -m maxpoolbert.report; needs \\usepackage{booktabs}.", ""]
    if not summary.empty:
        tex.append(main_table_latex(summary, tasks, scope))
    header, rows = ci_table(cells, tasks, latex=True)
    if rows:
        tex.append(latex_table(header, [(None, rows)],
                               "Dev task score ($\\times$100) per cell: mean and 95\\% confidence interval of the "
                               "mean (Student $t$ over seeds); failed runs (on the reported rows: at or below the "
                               "majority-class score, non-finite, or one prediction everywhere) are counted and "
                               "kept; \\emph{at chance}: the majority-class score lies within the interval. "
                               + scope, "tab:glue-ci", left=2))
    for i, (factor, base_value, group) in enumerate(factor_sections(comp)):
        blocks = [(title, comparison_rows(g, tasks, latex=True)) for title, g in _groups(group)]
        label = "tab:glue-diff" if i == 0 else f"tab:glue-diff-{i + 1}"
        tex.append(latex_table(comparison_header(latex=True), blocks,
                               f"Difference to the baseline {latex_escape(factor)}={latex_escape(str(base_value))} "
                               f"($\\times$100) on paired seeds, the other factors fixed: mean, 95\\% bootstrap "
                               f"intervals over seeds and over seeds and dev rows (B={options.bootstrap}), "
                               "Holm-adjusted permutation p-value, ASO $\\varepsilon_{\\min}$ (below 0.5: better), "
                               f"and the verdict (Holm-adjusted seeds $\\times$ rows interval: excludes 0, within "
                               f"$\\pm${options.rope:g}, or undecided). " + scope, label, left=2))
    if not low.empty:
        header, rows = _low_resource_wide(low, tasks, markdown=False)
        tex.append(latex_table(header, [(None, [[latex_escape(c) for c in r] for r in rows])],
                               "Low-resource dev scores ($\\times$100), mean $\\pm$ std over seeds.",
                               "tab:glue-low", left=3))
    (out / "results.tex").write_text("\n".join(tex), encoding="utf-8")


def _rows_note(options: Options) -> str:
    """Which rows chose and which rows scored, in one sentence (empty: every dev row scored)."""
    if options.rows == "heldout":
        held = ("the held-out rows of each task's training file (`data.heldout_size`: the same rows for every "
                "seed and pooling, rows no run trained on)")
        if options.half:
            return (f" Every score is on the odd-index rows of {held}; the even-index ones chose the selected value. "
                    "The official dev set's scores are shown beside, as the conventional number.")
        return f" Every score is on {held}. The official dev set's scores are shown beside, as the conventional number."
    if options.half:
        return " Every score is on the odd-index dev rows (the even ones chose the selected value)."
    return ""


def dev_beside(runs: pd.DataFrame, tasks: dict[str, TaskInfo]) -> str:
    """``--rows heldout``: each main-table cell's mean ± std dev score over its seeds, the number papers
    report (chosen with the held-out rows: the dev set took no part)."""
    main = runs[in_main(runs)]
    columns = [t for t in tasks if t in set(main["task"])]
    rows = []
    for (model, pooling), group in sorted(main.groupby(["model", "pooling"]), key=lambda kv: (kv[0][0], pooling_key(kv[0][1]))):
        cells = []
        for task in columns:
            scores = group.loc[group["task"] == task, "dev_score"].dropna().to_numpy() * 100
            cells.append(DASH if not len(scores) else _stat_cell(float(scores.mean()),
                                                                 float(scores.std(ddof=1)) if len(scores) > 1 else float("nan"),
                                                                 len(scores)))
        rows.append([model, f"`{pooling}`", *cells])
    return markdown_table(["Model", "Pooling", *(tasks[t].display_name for t in columns)], rows, left=2)


def _diff_cells(row: pd.Series, suffix: str = "") -> list[str]:
    """Δ, its 95% interval (seeds × rows; the seeds' where there are no rows, marked) and the verdict
    of one comparison row (``suffix``: the columns of a merged second table)."""
    diff = row.get(f"mean_diff{suffix}")
    if diff is None or pd.isna(diff):
        return [DASH, DASH, DASH]
    rows = pd.notna(row[f"two_level_low{suffix}"])
    low, high = (row[f"two_level_low{suffix}"], row[f"two_level_high{suffix}"]) if rows else (
        row[f"boot_low{suffix}"], row[f"boot_high{suffix}"])
    return [f"{diff:+.1f}", fmt_interval(low, high, signed=True) + ("" if rows else " (seeds)"),
            str(row[f"verdict{suffix}"])]


def both_rows_table(held: pd.DataFrame, dev: pd.DataFrame, tasks: dict[str, TaskInfo]) -> str:
    """``--rows heldout``: each main-table comparison's Δ, 95% interval and verdict on the held-out
    rows and on the dev set, side by side."""
    key = ["model", "table", "train_size", "factor", "value", "baseline_value", "task", "pooling", "baseline"]
    shown = ["mean_diff", "two_level_low", "two_level_high", "boot_low", "boot_high", "verdict"]
    both = held[held["table"] == MAIN].merge(dev[key + shown], on=key, how="left", suffixes=("", "_dev"))
    rows = [[f"`{r['pooling']}`", f"`{r['baseline']}`", _task_name(r["task"], tasks), str(int(r["n_pairs"])),
             *_diff_cells(r), *_diff_cells(r, "_dev")] for _, r in both.iterrows()]
    return markdown_table(["Compared", "Baseline", "Task", "n", "Δ held-out", "95% CI", "Verdict", "Δ dev",
                           "95% CI", "Verdict"], rows, left=3)


def _shown_baseline(factor: str, value: Any) -> str:
    from maxpoolbert.report.collect import show_value

    return str(value) if factor == "pooling" else show_value(value)
