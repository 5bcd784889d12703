"""Aggregate finished runs into benchmark tables, paired significance tests and plots.

Run as ``python -m maxpoolbert.report [--runs DIR] [--out DIR] [--from-wandb ENTITY/PROJECT]
[--select KEY [--select-on all|half]] [--effect POINTS] [--bootstrap B]``; a ``report.yaml`` in the
``--runs`` folder holds defaults for these options (the command line wins).

Every finished run leaves a folder with its record, ``results.json`` (:mod:`maxpoolbert.runs.folder`). This module reads all of
them under ``--runs`` (default ``$RUNS`` or ``outputs``), or the same summaries from W&B, and
writes into ``--out`` (default ``reports``):

``results.md``
    the human report: the protocol block (model and weights hash, libraries, hardware and
    precision, seeds, selection rule and budget, evaluation rule, runs used/failed/skipped,
    statistical settings), main table, confidence intervals and failed runs per cell, comparisons
    with ``cls`` and their power, the search budget, low-resource table, stability and
    degenerate-run counts, and the list of skipped runs with reasons.
``results.csv``
    tidy main-table statistics, one row per model, pooling, task, metric, and one
    ``<benchmark>_avg`` row (``glue_avg``, ``superglue_avg``, ...) per benchmark.
``cells.csv``, ``comparisons.csv``, ``budget.csv``
    one row per cell (n, mean, std, 95% CI, median, min, max, failed runs), per comparison with
    ``cls`` (mean difference, bootstrap intervals over seeds and over seeds and dev rows,
    permutation, Wilcoxon and Holm p-values, P(better), ASO's ε_min, seeds needed, detectable
    difference), and per point of a search-budget curve; README.md documents every column.
``differences.csv``
    each pooling minus ``cls`` with paired t-test and Wilcoxon p-values.
``low_resource.csv``, ``degenerate.csv``, ``skipped.csv``
    the other tables in tidy form.
``results.tex``
    booktabs versions of the main, confidence-interval, comparison and low-resource tables.
``stability.png``, ``forest.png``, ``low_resource.png``, ``budget.png``
    every seed with the mean and CI per cell, the paired differences with their intervals, score
    vs training-set size with CI bands, and the expected best score vs runs tried.

The main table shows each task at its full training set, or at its largest ``train_size`` when
it has no runs on the full set; its other sizes are the low-resource table. The output is
deterministic: the same runs give byte-identical ``results.md``, ``results.tex`` and CSVs.

What the tables know about a task (display name, benchmark, metrics in display order, column
position) comes from each run's ``task_info`` in ``results.json``; for a run written before it
existed, from the project's ``configs/task/<name>.yaml``; a run of a task known to neither is
skipped as "other configuration: unknown task". Columns: GLUE, SuperGLUE, custom, then other
benchmarks alphabetically; within a benchmark by ``order``, then name; each benchmark's average
follows its tasks. Headers name each task's metrics by their short names
(:data:`maxpoolbert.core.metrics.SHORT_NAMES`: ``F1/acc``, ``P/S``, ``m/mm``, ``acc/mF1``).

Conventions (also printed in ``results.md``):

* All scores are dev-set scores ×100. A cell is ``mean ± std (n=seeds)``; std is the sample
  standard deviation (ddof=1) over seeds, shown as ``–`` (empty in the CSVs) when n=1.
* Tasks with several metrics show each the way GLUE papers do (MRPC/QQP F1/acc, STS-B
  Pearson/Spearman, MNLI m/mm, CB acc/mF1), each with its own std: ``88.1/84.0 ± 0.9/1.1 (n=5)``.
  A task's score is the mean of its metrics; it ranks the rows (bold = best mean score per column
  within a model block, only when at least two rows have the column) and enters its benchmark's
  average.
* Each benchmark has its own average column (``GLUE avg``, ``SuperGLUE avg``, ``Custom avg``):
  the mean, over that benchmark's tasks the row has, of its per-task mean score (marked † when
  the row lacks some of them). Its n in ``results.csv`` is the number of tasks, its std is empty.
* A run is degenerate when its score is at or below ``majority_score + 1e-9``. Without
  ``majority_score`` (or with a NaN one, as for regression) it is degenerate when all predictions
  in ``dev_predictions.tsv`` are one value, and of unknown status when that file is missing too.
  A run with a non-finite score (e.g. Pearson of constant predictions) counts as degenerate and
  is left out of every mean.
* A cell (model, pooling, task, train_size) holds runs of one ``settings_id`` (the whole resolved
  config minus the keys that do not change what a run computes). Runs of one cell with different
  settings are refused, naming every differing key and its values (exit status 2), or with
  ``--split-settings`` shown as separate rows labelled by those keys; ``--select KEY`` and
  ``--ignore KEY`` take a key out of the identity. Duplicate seeds are runs of the same cell,
  settings and seed: the newest ``results.json`` (mtime) is kept, the others are skipped as
  "duplicate seed".

Modules: :mod:`~maxpoolbert.report.collect` reads runs into run records (results.json or W&B,
one experiment per cell, duplicate seeds); :mod:`~maxpoolbert.report.stats` computes
the tables; :mod:`~maxpoolbert.report.statistics` holds the estimators and
:mod:`~maxpoolbert.report.analysis` applies them (cells, comparisons, budgets, protocol);
:mod:`~maxpoolbert.report.render` writes markdown, LaTeX and CSV;
:mod:`~maxpoolbert.report.plots` draws the figures; :mod:`~maxpoolbert.report.cli` is the command
line (``--select`` via :mod:`~maxpoolbert.report.selection`).
"""

from maxpoolbert.report.analysis import Options, cell_table, comparison_table
from maxpoolbert.report.cli import apply_selection, main, parse_args
from maxpoolbert.report.collect import (
    CELL,
    DEGENERATE_TOL,
    RUN_COLUMNS,
    MixedSettingsError,
    ReportError,
    RunError,
    check_settings,
    collect_runs,
    collect_wandb,
    drop_duplicate_seeds,
    metric_columns,
    parse_record,
    predictions_constant,
    records_to_frame,
    tasks_of,
    wandb_run_to_record,
)
from maxpoolbert.report.plots import plot_budget, plot_forest, plot_low_resource, plot_stability
from maxpoolbert.report.render import (
    DASH,
    latex_escape,
    latex_table,
    main_table_latex,
    main_table_markdown,
    markdown_table,
    write_report,
)
from maxpoolbert.report.stats import (
    BASELINE,
    GLUE_AVG,
    POOLING_ORDER,
    avg_key,
    degenerate_table,
    difference_table,
    full_train_sizes,
    low_resource_table,
    pooling_key,
    summary_table,
    table_columns,
)
from maxpoolbert.tasks.task import TaskInfo

__all__ = [
    "BASELINE", "CELL", "DASH", "DEGENERATE_TOL", "GLUE_AVG", "POOLING_ORDER", "RUN_COLUMNS",
    "MixedSettingsError", "Options", "ReportError", "RunError", "TaskInfo", "apply_selection", "avg_key",
    "cell_table", "check_settings", "comparison_table", "collect_runs", "collect_wandb", "degenerate_table", "difference_table",
    "drop_duplicate_seeds", "full_train_sizes", "latex_escape", "latex_table", "low_resource_table", "main",
    "main_table_latex", "main_table_markdown", "markdown_table", "metric_columns", "parse_args",
    "parse_record", "plot_budget", "plot_forest", "plot_low_resource", "plot_stability", "pooling_key", "predictions_constant",
    "records_to_frame", "summary_table", "table_columns", "tasks_of", "wandb_run_to_record", "write_report",
]
