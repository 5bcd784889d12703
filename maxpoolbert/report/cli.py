"""``python -m maxpoolbert.report``: arguments, selection (``--select``), exit statuses."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from maxpoolbert import report
from maxpoolbert.errors import EXIT_CODE, UserError, check_writable_folder
from maxpoolbert.report import selection
from maxpoolbert.report.collect import ReportError, SelectionError, collect_runs, collect_wandb
from maxpoolbert.report.render import write_report

# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m maxpoolbert.report", description=report.__doc__.split("\n")[0])
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
    return parser.parse_args(argv)


def apply_selection(runs: pd.DataFrame, args: argparse.Namespace, root: Path | None):
    """``--select``: the chosen runs, the selection table and the report's selection section."""
    chosen = selection.select(runs, args.select, args.select_on, root)
    section = ["## Model selection", selection.describe(args.select, args.select_on),
               selection.chosen_markdown(chosen.table, args.select),
               "Each cell: chosen value (its mean selection score ×100 over n seeds); every candidate is in "
               "`selection.csv`."]
    section += [f"Note: {note}" for note in chosen.notes]
    return chosen, section


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 no usable runs, 2 runs of different
    settings in one cell, no ``--runs`` folder or an unwritable ``--out``)."""
    args = parse_args(argv)
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
                                          split=args.split_settings)
        else:
            source = args.runs
            runs, skipped = collect_runs(args.runs, by=args.select, ignore=args.ignore, split=args.split_settings)
        if runs.empty:
            example = (f" ({len(skipped)} skipped, e.g. {skipped[0]['path']}: "
                       f"{skipped[0]['reason']})") if skipped else ""
            raise ReportError(f"no usable runs found in {source}{example}")
        preface: list[str] = []
        chosen = None
        if args.select:
            chosen, preface = apply_selection(runs, args, None if args.from_wandb else Path(args.runs))
            runs = chosen.runs
    except SelectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    out = Path(args.out)
    write_report(runs, skipped, out, source, preface)
    if chosen is not None:
        chosen.table.to_csv(out / "selection.csv", index=False)
    print(f"report: {len(runs)} run(s) used, {len(skipped)} skipped -> {out / 'results.md'}")
    return 0

