"""``python -m maxpoolbert.report``: arguments, defaults from ``<runs>/report.yaml``, selection
(``--select``), exit statuses."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from maxpoolbert.core.errors import EXIT_CODE, UserError, WriteFailed, check_writable_folder
from maxpoolbert.report import analysis, failures, rows, selection
from maxpoolbert.report.collect import (
    ReportError,
    SelectionError,
    collect_runs,
    collect_wandb,
    metric_columns,
    resolve_baselines,
)
from maxpoolbert.report.render import write_report
from maxpoolbert.report.rows import ROWS

REPORT_YAML = "report.yaml"
DESCRIPTION = "Aggregate finished runs into benchmark tables, paired significance tests and plots."
# report.yaml key -> the option it sets (its defaults; the command line wins)
YAML_OPTIONS = {"select": "--select", "select_on": "--select-on", "effect": "--effect",
                "bootstrap": "--bootstrap", "ignore": "--ignore", "split_settings": "--split-settings",
                "compare": "--compare", "baseline": "--baseline", "rope": "--rope", "rows": "--rows"}
REPEATABLE = ("--ignore", "--compare", "--baseline")

# --------------------------------------------------------------------------- CLI


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: not a positive number")
    return value


def _resamples(text: str) -> int:
    value = int(text)
    if value < 100:
        raise argparse.ArgumentTypeError(f"{text}: too few; an integer at least 100")
    return value


def build_parser(exit_on_error: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m maxpoolbert.report", description=DESCRIPTION,
                                     exit_on_error=exit_on_error)
    parser.add_argument("--runs", default=os.environ.get("RUNS", "outputs"),
                        help="folder searched recursively for results.json (default: $RUNS or outputs)")
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    parser.add_argument("--from-wandb", metavar="ENTITY/PROJECT",
                        help="read run summaries from W&B instead of --runs")
    parser.add_argument("--split-settings", "--allow-mixed", dest="split_settings", action="store_true",
                        help="runs of one cell with different settings: show each settings as its own row, "
                             "labelled by the keys that differ (default: refuse, naming them)")
    parser.add_argument("--ignore", metavar="KEY", action="append", default=[],
                        help="leave KEY out of the runs' identity (e.g. a setting a later version added); "
                             "repeatable")
    parser.add_argument("--select", metavar="KEY",
                        help="per cell, report only the value of KEY (e.g. optimizer.lr) with the best mean dev "
                             "score over seeds; writes selection.csv")
    parser.add_argument("--select-on", choices=selection.MODES, default="all",
                        help="all: choose and report on every dev row (optimistic); half: choose on even-index "
                             "dev rows, report odd-index rows only (honest)")
    parser.add_argument("--rows", choices=ROWS, default="dev",
                        help="the rows every number is on: dev (the official dev set) or heldout (the held-out "
                             "training rows of runs trained with data.heldout_size; the dev scores are shown beside)")
    parser.add_argument("--compare", metavar="KEY", action="append", default=[],
                        help="compare along KEY too (any key of the runs' settings, e.g. optimizer.layer_decay, "
                             "pooling.module.k, head.use_pooler, model.name): each value against the baseline "
                             "value, seed by seed, the other factors held fixed; repeatable (pooling is always "
                             "compared)")
    parser.add_argument("--baseline", metavar="KEY=VALUE", action="append", default=[],
                        help="the baseline value of a compared factor (default: pooling=cls; for another key the "
                             "config's default value, shown as 'default' when null); repeatable")
    parser.add_argument("--rope", type=_positive_float, default=analysis.DEFAULT_ROPE, metavar="POINTS",
                        help="region of practical equivalence (×100 points): a difference whose interval lies "
                             f"inside ±POINTS is 'equivalent' (default {analysis.DEFAULT_ROPE:g})")
    parser.add_argument("--effect", type=_positive_float, default=analysis.DEFAULT_EFFECT, metavar="POINTS",
                        help="the difference (×100 points) the power analysis asks about: seeds needed to detect "
                             f"it with 80%% power (default {analysis.DEFAULT_EFFECT:g})")
    parser.add_argument("--bootstrap", type=_resamples, default=analysis.DEFAULT_B, metavar="B",
                        help=f"bootstrap resamples of every interval and of ASO (default {analysis.DEFAULT_B}; "
                             f"seed {analysis.BOOT_SEED})")
    return parser


def yaml_defaults(runs: str | os.PathLike) -> list[str]:
    """The options ``<runs>/report.yaml`` sets, as command-line tokens to put before the given ones
    (so the command line wins; ``ignore`` adds to ``--ignore``). No file: none. A key or value that
    is not allowed: :class:`UserError`."""
    path = Path(runs) / REPORT_YAML
    if not path.is_file():
        return []
    where = f"{Path(runs).name}/{REPORT_YAML}"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UserError(f"{where}: cannot be read ({' '.join(str(err).split())[:80]})",
                        allowed="a YAML mapping of report options") from None
    if data is None:
        return []
    allowed = "keys " + ", ".join(YAML_OPTIONS)
    if not isinstance(data, dict):
        raise UserError(f"{where}: not a mapping of options", allowed=allowed)
    tokens: list[str] = []
    for key, value in data.items():
        option = YAML_OPTIONS.get(str(key).replace("-", "_"))
        if option is None:
            raise UserError("unknown key", key=f"{where}: {key}", value=str(value), allowed=allowed)
        if option == "--split-settings":
            if not isinstance(value, bool):
                raise UserError("not a boolean", key=f"{where}: {key}", value=str(value), allowed="true or false")
            tokens += [option] if value else []
        elif option == "--baseline" and isinstance(value, dict):
            for k, v in value.items():
                tokens += [option, f"{k}={'null' if v is None else v}"]
        elif option in REPEATABLE:
            for item in value if isinstance(value, list) else [value]:
                tokens += [option, str(item)]
        elif value is not None:
            if isinstance(value, dict | list):
                raise UserError("not a single value", key=f"{where}: {key}", value=str(value),
                                allowed=f"a value of {option}")
            tokens += [option, str(value)]
    try:
        build_parser(exit_on_error=False).parse_args(tokens)
    except argparse.ArgumentError as err:
        raise UserError(f"{where}: {' '.join(str(err).split())}",
                        allowed="the values the option takes on the command line") from None
    return tokens


def _runs_folder(argv: Sequence[str]) -> str:
    """``--runs`` as the command line gives it (or its default), before report.yaml is read."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--runs", default=os.environ.get("RUNS", "outputs"))
    probe.add_argument("--from-wandb")
    known, _ = probe.parse_known_args(list(argv))
    return "" if known.from_wandb else known.runs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options: the command line's, over the defaults ``<runs>/report.yaml`` sets, over the
    built-in ones."""
    argv = list(sys.argv[1:] if argv is None else argv)
    runs = _runs_folder(argv)
    tokens = yaml_defaults(runs) if runs and Path(runs).is_dir() else []
    return build_parser().parse_args([*tokens, *argv])


def apply_selection(runs: pd.DataFrame, args: argparse.Namespace, root: Path | None):
    """``--select``: the chosen runs, the selection table and the report's selection section."""
    chosen = selection.select(runs, args.select, args.select_on, root, args.rows)
    section = ["## Model selection", selection.describe(args.select, args.select_on, args.rows),
               selection.chosen_markdown(chosen.table, args.select),
               "Each cell: chosen value (its mean selection score ×100 over n seeds); every candidate is in "
               "`selection.csv`."]
    section += [f"Note: {note}" for note in chosen.notes]
    return chosen, section


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 no usable runs, 2 runs of different
    settings in one cell, no ``--runs`` folder or an unwritable ``--out``)."""
    try:
        args = parse_args(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CODE
    try:
        check_writable_folder(args.out, "--out")
        if not args.from_wandb and not Path(args.runs).is_dir():
            raise UserError("no runs found: not a folder", key="--runs", value=args.runs,
                            allowed="a folder with run folders (results.json) anywhere below it")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CODE
    try:
        if args.from_wandb:
            source = f"wandb:{args.from_wandb}"
            runs, skipped = collect_wandb(args.from_wandb, by=args.select, ignore=args.ignore,
                                          split=args.split_settings, compare=args.compare)
        else:
            source = args.runs
            runs, skipped = collect_runs(args.runs, by=args.select, ignore=args.ignore, split=args.split_settings,
                                         compare=args.compare)
        if runs.empty:
            example = (f" ({len(skipped)} skipped, e.g. {skipped[0]['path']}: "
                       f"{skipped[0]['reason']})") if skipped else ""
            raise ReportError(f"no usable runs found in {source}{example}")
        factors = resolve_baselines(runs, args.compare, args.baseline)
        preface: list[str] = []
        chosen = None
        root = None if args.from_wandb else Path(args.runs)
        if args.rows == "heldout":
            if root is None:
                raise SelectionError("--rows heldout needs run folders with their held-out predictions (not --from-wandb)")
            runs, left_out = rows.rescore(runs, root, metric_columns(runs))
            skipped = skipped + left_out
            if runs.empty:
                raise ReportError(f"no run in {args.runs} has held-out predictions (train with data.heldout_size=N)")
        if args.select:
            chosen, preface = apply_selection(runs, args, root)
            runs = chosen.runs
        runs = failures.judge(runs, root, half=bool(args.select) and args.select_on == "half", rows=args.rows)
    except SelectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    out = Path(args.out)
    options = analysis.Options(effect=args.effect, bootstrap=args.bootstrap, select=args.select,
                               select_on=args.select_on, root=root, factors=factors, rope=args.rope, rows=args.rows)
    try:
        write_report(runs, skipped, out, source, preface, options,
                     selection_table=None if chosen is None else chosen.table,
                     candidates=None if chosen is None else chosen.candidates)
    except WriteFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CODE
    print(f"report: {len(runs)} run(s) used, {len(skipped)} skipped -> {out / 'results.md'}")
    return 0

