"""Aggregate finished runs into GLUE tables, paired significance tests and plots.

Run as ``python -m maxpoolbert.report [--runs DIR] [--out DIR] [--from-wandb ENTITY/PROJECT]``.

Every finished run leaves a folder with ``results.json`` (see DESIGN.md). This module reads all of
them under ``--runs`` (default ``$RUNS`` or ``outputs``), or the same summaries from W&B, and
writes into ``--out`` (default ``reports``):

``results.md``
    the human report: main table, differences vs ``cls``, low-resource table, stability and
    degenerate-run counts, and the list of skipped runs with reasons.
``results.csv``
    tidy main-table statistics, one row per model, pooling, task, metric (full training set).
``differences.csv``
    each pooling minus ``cls`` with paired t-test and Wilcoxon p-values.
``low_resource.csv``, ``degenerate.csv``, ``skipped.csv``
    the other tables in tidy form.
``results.tex``
    booktabs versions of the main, difference and low-resource tables.
``low_resource.png``, ``stability.png``
    score vs training-set size, and the spread of scores over seeds.

Conventions (also printed in ``results.md``):

* All scores are dev-set scores ×100. A cell is ``mean ± std (n=seeds)``; std is the sample
  standard deviation (ddof=1) over seeds, shown as ``–`` (empty in the CSVs) when n=1.
* Two-metric tasks show both metrics the way GLUE papers do (MRPC/QQP F1/acc, STS-B
  Pearson/Spearman, MNLI m/mm), each with its own std: ``88.1/84.0 ± 0.9/1.1 (n=5)``. A task's
  score is the mean of its metrics; it ranks the rows (bold = best mean score per column within a
  model block, only when at least two rows have the column) and enters the GLUE average.
* The GLUE average of a row is the mean, over the tasks that row has, of its per-task mean
  score. Its n in ``results.csv`` is the number of tasks, its std is empty.
* A run is degenerate when its score is at or below ``majority_score + 1e-9``. Without
  ``majority_score`` (or with a NaN one, as for regression) it is degenerate when all predictions
  in ``dev_predictions.tsv`` are one value, and of unknown status when that file is missing too.
  A run with a non-finite score (e.g. Pearson of constant predictions) counts as degenerate and
  is left out of every mean.
* Duplicate seeds in a cell (model, pooling, task, train_size): the newest ``results.json``
  (mtime) is kept, the others are skipped as "duplicate seed". Mixing different ``hparams`` in one
  cell (after removing duplicates) is refused unless ``--allow-mixed``; runs without ``hparams``
  never conflict.
"""


from maxpoolbert.report.cli import apply_selection, main, parse_args
from maxpoolbert.report.collect import (
    ALL_METRICS,
    CELL,
    DEGENERATE_TOL,
    GLUE_TRAIN_SIZE,
    REQUIRED_KEYS,
    RUN_COLUMNS,
    TASKS,
    MixedHparamsError,
    ReportError,
    RunError,
    check_hparams,
    collect_runs,
    collect_wandb,
    drop_duplicate_seeds,
    find_run_dirs,
    parse_record,
    predictions_constant,
    read_failure,
    records_to_frame,
    wandb_run_to_record,
)
from maxpoolbert.report.plots import plot_low_resource, plot_stability
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
    degenerate_table,
    difference_table,
    low_resource_table,
    pooling_key,
    summary_table,
)

__all__ = [
    "ALL_METRICS", "BASELINE", "CELL", "DASH", "DEGENERATE_TOL", "GLUE_AVG", "GLUE_TRAIN_SIZE",
    "POOLING_ORDER", "REQUIRED_KEYS", "RUN_COLUMNS", "TASKS", "MixedHparamsError", "ReportError",
    "RunError", "apply_selection", "check_hparams", "collect_runs", "collect_wandb",
    "degenerate_table", "difference_table", "drop_duplicate_seeds", "find_run_dirs",
    "latex_escape", "latex_table", "low_resource_table", "main", "main_table_latex",
    "main_table_markdown", "markdown_table", "parse_args", "parse_record", "plot_low_resource",
    "plot_stability", "pooling_key", "predictions_constant", "read_failure", "records_to_frame",
    "summary_table", "wandb_run_to_record", "write_report",
]
