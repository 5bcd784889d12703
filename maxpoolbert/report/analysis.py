"""The report's inference (issue 20): per-cell summaries with confidence intervals and failed
runs, paired comparisons against ``cls`` (bootstrap over seeds, two-level bootstrap over seeds and
dev rows, permutation test, Wilcoxon, Holm, P(better), ASO, power), expected-best curves of a
search, and the protocol block of ``results.md``.

Every score and difference here is in ×100 points, the report's unit; the estimators are those of
:mod:`maxpoolbert.report.statistics`. Everything random is seeded (:data:`BOOT_SEED`), so the
same runs give the same numbers, byte for byte.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from maxpoolbert.report import rows as scored_rows
from maxpoolbert.report import statistics as S
from maxpoolbert.report.collect import CELL, factor_column, factor_keys, show_value, unset
from maxpoolbert.report.rows import evaluation
from maxpoolbert.report.stats import (
    BASELINE,
    LOW,
    MAIN,
    _sort,
    avg_key,
    benchmarks,
    in_main,
    main_sizes,
    pooling_key,
    size_key,
)
from maxpoolbert.runs.folder import RunFolder
from maxpoolbert.runs.identity import UNSET, completed
from maxpoolbert.tasks.task import TaskInfo

ALPHA = 0.05            # every interval is a 95% one, every test two-sided at 5%
POWER = 0.8             # the power the seed counts are for
BOOT_SEED = 0           # the seed of every bootstrap, permutation and ASO draw
DEFAULT_B = 1000        # bootstrap resamples (--bootstrap)
DEFAULT_EFFECT = 1.0    # the difference, in points, the power analysis asks about (--effect)
DEFAULT_ROPE = 1.0      # points: a difference inside ±ROPE is practically equivalent (--rope)
PERMUTATIONS = 100_000  # random sign patterns of the permutation test beyond EXACT_MAX_N pairs
EXACT_MAX_N = 10        # up to this many pairs the permutation test enumerates all 2**n signs
MATCH_TOL = 1e-3        # points: recomputed scores must reproduce the recorded ones this closely


@dataclass(frozen=True)
class Options:
    """The report's analysis options (``--effect``, ``--bootstrap``, ``--select``, ``--select-on``)
    and where the run folders are (``root``; None for W&B runs: no dev predictions)."""

    effect: float = DEFAULT_EFFECT
    bootstrap: int = DEFAULT_B
    select: str | None = None
    select_on: str = "all"
    root: Path | None = None
    # the compared factors, each with its baseline value (JSON text; pooling: the pooling's name)
    factors: tuple[tuple[str, str], ...] = (("pooling", BASELINE),)
    rope: float = DEFAULT_ROPE
    rows: str = "dev"   # the rows every number is on: dev, or the held-out training rows (--rows)

    @property
    def half(self) -> bool:
        """Every reported number is on the odd-index dev rows (``--select KEY --select-on half``)."""
        return self.select is not None and self.select_on == "half"


# --------------------------------------------------------------------------- cells

CELL_COLUMNS = ["model", "task", "pooling", "train_size", "table", "seeds", "n_runs", "n", "n_failed",
                "n_status_unknown", "mean", "std", "ci_low", "ci_high", "median", "min", "max", "majority",
                "at_chance"]


def _seed_list(seeds: Sequence[int]) -> str:
    return " ".join(str(int(s)) for s in sorted(seeds))


def cell_table(runs: pd.DataFrame, tasks: dict[str, TaskInfo]) -> pd.DataFrame:
    """One row per cell (model, task, pooling, train size), every run of it (``cells.csv``).

    ``n_runs`` counts every run, ``n`` those with a finite score (every statistic uses them),
    ``n_failed`` the failed ones (on the reported rows: score at or below the majority-class score +
    1e-9, a non-finite score, or one prediction on every row: :mod:`~maxpoolbert.report.failures`),
    which stay in every statistic; ``n_status_unknown`` the runs whose status cannot be told. mean,
    std (ddof=1), the Student-t 95% interval of the mean, median, min, max and ``majority`` (the
    majority-class score on the reported rows) are ×100; ``at_chance``: the majority-class score lies
    within (or above) the cell's interval (n = 1: the mean is at or below it).
    """
    table = np.where(in_main(runs), MAIN, LOW)
    rows = []
    for (model, pooling, task, size), group in runs.assign(_table=table).groupby(CELL, dropna=False):
        summary = S.cell_summary(group["score"].to_numpy() * 100, alpha=ALPHA)
        status = group["degenerate"]
        majority = group["majority_score"].dropna()
        rows.append({"model": model, "task": task, "pooling": pooling, "train_size": size,
                     "table": group["_table"].iloc[0], "seeds": _seed_list(group["seed"]),
                     "n_runs": len(group), "n": summary["n"], "n_failed": int((status == True).sum()),  # noqa: E712
                     "n_status_unknown": int(status.isna().sum()),
                     **{k: summary[k] for k in ("mean", "std", "ci_low", "ci_high", "median", "min", "max")},
                     "majority": majority.mean() * 100 if len(majority) else math.nan,
                     "at_chance": _at_chance(group["score"].to_numpy() * 100, group["majority_score"])})
    out = pd.DataFrame(rows, columns=CELL_COLUMNS)
    out["train_size"] = out["train_size"].astype("Int64")
    out["at_chance"] = out["at_chance"].astype("boolean")
    return _sort(out, ["model", "table", "train_size", "task", "pooling"], tasks)


# --------------------------------------------------------------------------- dev predictions


class Unavailable(Exception):
    """Why a two-level bootstrap cannot be computed (the message, without a machine path); ``path``:
    the run whose predictions are at fault, when one is."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class Predictions:
    """The dev predictions of run folders under ``root`` (read once each), as the
    :class:`~maxpoolbert.report.statistics.SplitRows` of a paired comparison."""

    def __init__(self, root: Path, half: bool, rows: str = "dev"):
        self.root, self.half, self.rows = root, half, rows
        self._cache: dict[str, tuple[dict, pd.DataFrame] | Unavailable] = {}

    def load(self, path: str) -> tuple[dict[str, dict[str, str]], pd.DataFrame]:
        if path not in self._cache:
            self._cache[path] = self._read(path)
        got = self._cache[path]
        if isinstance(got, Unavailable):
            raise Unavailable(str(got), path)
        return got

    def _read(self, path: str):
        folder = RunFolder(self.root / path)
        record = folder.record()
        if record is None:
            return Unavailable("a record cannot be read")
        try:
            spec, frame = evaluation(folder, record, self.rows)
        except (OSError, ValueError):
            return Unavailable(f"no readable {scored_rows.source(folder, self.rows).name}")
        if not spec:
            return Unavailable("a record names no dev metrics")
        if not {"split", "index", "label", "prediction"} <= set(frame.columns):
            return Unavailable(f"a {folder.predictions_file.name} lacks columns")
        return spec, frame

    def splits(self, paths_a: Sequence[str], paths_b: Sequence[str]) -> list[S.SplitRows]:
        """The splits of the runs ``paths_a`` (the pooling) and ``paths_b`` (``cls``), paired by
        position (seed); with ``half``, only the odd-index rows."""
        loaded = [self.load(p) for p in [*paths_a, *paths_b]]
        spec = loaded[0][0]
        if any(s != spec for s, _ in loaded):
            raise Unavailable("the runs name different dev metrics")
        out = []
        for split, metrics in spec.items():
            frames = []
            for _, frame in loaded:
                part = frame[frame["split"] == split]
                if self.half:
                    part = part[part["index"] % 2 == 1]
                frames.append(part.sort_values("index", kind="stable"))
            first = frames[0]
            if first.empty:
                raise Unavailable(f"no dev rows of split {split}")
            index, labels = first["index"].to_numpy(), first["label"].to_numpy()
            for part in frames[1:]:
                if len(part) != len(first) or not (np.array_equal(part["index"].to_numpy(), index)
                                                   and np.array_equal(part["label"].to_numpy(), labels)):
                    raise Unavailable("the runs' dev rows differ")
            preds = np.stack([part["prediction"].to_numpy() for part in frames])
            try:
                out.append(S.SplitRows(labels, preds[:len(paths_a)], preds[len(paths_a):], tuple(metrics.values())))
            except ValueError as err:
                raise Unavailable(f"split {split}: {err}") from None
        return out


# --------------------------------------------------------------------------- comparisons

COMPARISON_COLUMNS = [
    "model", "table", "train_size", "factor", "value", "baseline_value", "task", "pooling", "baseline",
    "n_tasks", "n_pairs", "seeds",
    "mean_pooling", "mean_baseline", "mean_diff", "std_diff", "boot_low", "boot_high",
    "two_level_low", "two_level_high", "two_level_dropped", "perm_p", "perm_exact", "wilcoxon_p",
    "holm_p", "holm_m", "prob_better", "aso_eps_min", "aso_eps_min_reverse", "aso_m", "effect", "seeds_needed",
    "min_detectable", "n_rows", "row_sd", "detectable_rows", "detectable_floor", "seeds_needed_rows",
    "verdict", "verdict_basis", "verdict_low", "verdict_high", "verdict_level", "rope",
    "at_chance_pooling", "at_chance_baseline", "bayes_worse", "bayes_equivalent", "bayes_better",
]
BAYES_SAMPLES = 10_000   # posterior draws of the Bayesian signed-rank test (seed BOOT_SEED)


def _nan_stats() -> dict[str, Any]:
    return {"mean_pooling": math.nan, "mean_baseline": math.nan, "mean_diff": math.nan, "std_diff": math.nan,
            "boot_low": math.nan, "boot_high": math.nan, "perm_p": math.nan, "perm_exact": pd.NA,
            "wilcoxon_p": math.nan, "prob_better": math.nan, "seeds_needed": pd.NA, "min_detectable": math.nan}


def paired_stats(a: np.ndarray, b: np.ndarray, options: Options) -> dict[str, Any]:
    """The seed-level statistics of one paired comparison: ``a`` the compared arm's and ``b`` the
    baseline's scores (×100) of the same seeds, in the same order."""
    n = len(a)
    out = _nan_stats()
    if n == 0:
        return out
    d = a - b
    out.update(mean_pooling=float(a.mean()), mean_baseline=float(b.mean()), mean_diff=float(d.mean()),
               prob_better=S.prob_better(a, b))
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    low, high = S.paired_bootstrap_ci(d, B=options.bootstrap, seed=BOOT_SEED, alpha=ALPHA)
    needed = S.seeds_needed(sd, options.effect, alpha=ALPHA, power=POWER)
    out.update(std_diff=sd, boot_low=low, boot_high=high,
               perm_p=S.permutation_p(d, n_resamples=PERMUTATIONS, seed=BOOT_SEED, exact_max_n=EXACT_MAX_N),
               perm_exact=n <= EXACT_MAX_N, wilcoxon_p=S.wilcoxon_p(d),
               seeds_needed=pd.NA if needed is None else needed,
               min_detectable=S.min_detectable(sd, n, alpha=ALPHA, power=POWER))
    return out


def seed_replicates(d: np.ndarray, B: int) -> np.ndarray:
    """The seed bootstrap's replicates of the mean paired difference: the draws of
    :func:`~maxpoolbert.report.statistics.paired_bootstrap_ci` (same seed, same stream)."""
    d = d[np.isfinite(d)]
    if d.size < 2:
        return np.array([])
    idx = np.random.default_rng(BOOT_SEED).integers(0, d.size, size=(B, d.size))
    return d[idx].mean(axis=1)


@dataclass
class _Pairs:
    """The runs of one task comparison, paired on seeds: the compared arm (a) and the baseline (b)."""

    seeds: list[int]
    a: np.ndarray
    b: np.ndarray
    paths_a: list[str]
    paths_b: list[str]
    size: Any


def _pairs(treated: pd.DataFrame, base: pd.DataFrame) -> _Pairs:
    joined = pd.merge(treated[["seed", "score", "path"]], base[["seed", "score", "path"]], on="seed",
                      suffixes=("_a", "_b")).sort_values("seed")
    size = treated["train_size"].iloc[0]
    return _Pairs([int(s) for s in joined["seed"]], joined["score_a"].to_numpy() * 100,
                  joined["score_b"].to_numpy() * 100, list(joined["path_a"]), list(joined["path_b"]), size)


@dataclass
class Comparisons:
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def factor_values(runs: pd.DataFrame, factor: str) -> pd.Series:
    """Each run's value along ``factor``: the pooling's name, or a compared key's JSON text (None
    where the run's settings lack the key)."""
    column = factor_column(factor)
    if column not in runs:
        return runs["pooling"] if factor == "pooling" else pd.Series([None] * len(runs), index=runs.index)
    return pd.Series([None if unset(v) else v for v in runs[column]], index=runs.index, dtype=object)


def _context(runs: pd.DataFrame, factor: str) -> list[tuple]:
    """Each run's values of every other factor (the things held fixed along ``factor``)."""
    others = [k for k in ["pooling", *factor_keys(runs)] if k != factor]
    columns = [factor_values(runs, k).tolist() for k in others]
    return [tuple(zip(others, values, strict=True)) for values in zip(*columns, strict=True)] if others else \
        [()] * len(runs)


def _matches(base: tuple, mine: tuple) -> bool:
    """A baseline run's context fits a compared arm's when every factor is equal or the baseline run
    has no such setting (``cls`` lacks ``pooling.module.k``: it is every k's baseline)."""
    return all(bv is None or bv == mv for (_, bv), (_, mv) in zip(base, mine, strict=True))


def comparison_table(runs: pd.DataFrame, tasks: dict[str, TaskInfo], options: Options) -> Comparisons:
    """Along each factor of ``options.factors`` (pooling by default; ``--compare KEY``), every value
    against the factor's baseline value, the other factors held fixed, per table (the main one; each
    low-resource size), model and task on the seeds both arms share, and per benchmark average
    (``comparisons.csv``): see README.md's report section for every column. Runs with a non-finite
    score are left out (their seed is not shared)."""
    factors = list(options.factors)
    scored = runs[runs["score"].notna()].copy()
    scored["_main"] = in_main(scored, main_sizes(runs)).to_numpy()
    predictions = Predictions(options.root, options.half, options.rows) if options.root is not None else None
    unavailable: dict[str, list[str]] = {}
    rows = []
    groups = [(model, MAIN, g[g["_main"]]) for model, g in scored.groupby("model", sort=True)]
    low = scored[~scored["_main"]]
    for (model, _size), g in low.groupby(["model", "train_size"], sort=True):
        groups.append((model, LOW, g))
    for factor, base_value in factors:
        for model, table, group in groups:
            values = factor_values(group, factor)
            contexts = pd.Series(_context(group, factor), index=group.index, dtype=object)
            base_mask = values == base_value
            base_runs = group[base_mask]
            if base_runs.empty:
                continue
            arms = group[~base_mask & values.notna()]
            keys = sorted({(contexts[i], values[i]) for i in arms.index},
                          key=lambda cv: (str(cv[0]), _value_key(factor, cv[1])))
            for context, value in keys:
                mine = arms[(values[arms.index] == value) & contexts[arms.index].map(lambda c, ctx=context: c == ctx)]
                fits = contexts[base_runs.index].map(lambda c, ctx=context: _matches(c, ctx))
                base = base_runs[fits]
                exact = base[contexts[base.index].map(lambda c, ctx=context: c == ctx)]
                base = exact if not exact.empty else base
                if base.empty or base["pooling"].nunique() != 1:
                    continue
                head = {"model": model, "table": table, "factor": factor, "value": _show(factor, value),
                        "baseline_value": _show(factor, base_value), "pooling": mine["pooling"].iloc[0],
                        "baseline": base["pooling"].iloc[0]}
                rows += _family(head, mine, base, tasks, options, predictions, unavailable)
    out = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    for col in ("train_size", "two_level_dropped", "holm_m", "seeds_needed", "seeds_needed_rows", "n_rows"):
        out[col] = out[col].astype("Int64")
    out["perm_exact"] = out["perm_exact"].astype("boolean")
    for col in ("at_chance_pooling", "at_chance_baseline"):
        out[col] = out[col].astype("boolean")
    notes = []
    for why, where in sorted(unavailable.items()):
        example = "" if why.startswith("runs read from W&B") else f", e.g. `{where[0]}`"
        notes.append(f"Two-level bootstrap left empty for {len(where)} comparison(s): {why}{example}.")
    return Comparisons(_order_comparisons(out, tasks, [f for f, _ in factors]), notes)


def _show(factor: str, value: Any) -> str:
    return str(value) if factor == "pooling" else show_value(value)


def _value_key(factor: str, value: Any) -> tuple:
    if factor == "pooling":
        return pooling_key(value)
    shown = show_value(value)
    try:
        return (0, float(shown), "")
    except ValueError:
        return (1, 0.0, shown)


def _at_chance(scores: np.ndarray, majority: pd.Series) -> bool | None:
    """A cell at chance: the majority-class score lies within (or above) its 95% interval of the
    mean: ``majority >= ci_low`` (n = 1: ``mean <= majority``). None without a majority score."""
    values = majority.dropna()
    if values.empty:
        return None
    summary = S.cell_summary(scores, alpha=ALPHA)
    level = float(values.mean()) * 100
    if summary["n"] == 0:
        return None
    bound = summary["ci_low"] if summary["n"] >= 2 else summary["mean"]
    return bool(level >= bound)


def _family(head: dict, mine: pd.DataFrame, base: pd.DataFrame, tasks: dict[str, TaskInfo], options: Options,
            predictions: Predictions | None, unavailable: dict[str, list[str]]) -> list[dict]:
    """The rows of one comparison family: the compared arm ``mine`` against ``base`` on each task
    (Holm and the verdicts' step-down over them), then each benchmark average."""
    task_rows, pairs_of, replicates = [], {}, []
    for task in tasks:
        a, b = mine[mine["task"] == task], base[base["task"] == task]
        if a.empty or b.empty:
            continue
        pairs = _pairs(a, b)
        if not pairs.seeds:
            continue
        pairs_of[task] = pairs
        row = {**head, "train_size": pairs.size, "task": task, "n_tasks": 1, "n_pairs": len(pairs.seeds),
               "seeds": _seed_list(pairs.seeds), **paired_stats(pairs.a, pairs.b, options),
               "two_level_low": math.nan, "two_level_high": math.nan, "two_level_dropped": pd.NA,
               "n_rows": pd.NA, "row_sd": math.nan, "at_chance_pooling": _at_chance(a["score"].to_numpy() * 100, a["majority_score"]),
               "at_chance_baseline": _at_chance(b["score"].to_numpy() * 100, b["majority_score"])}
        reps, basis = seed_replicates(pairs.a - pairs.b, options.bootstrap), "seeds"
        if predictions is None:
            unavailable.setdefault("runs read from W&B have no dev predictions", []).append(task)
        else:
            try:
                splits = predictions.splits(pairs.paths_a, pairs.paths_b)
                row["n_rows"] = sum(int(sp.labels.size) for sp in splits)
                crossed, estimate = S.bootstrap_replicates(splits, B=options.bootstrap, seed=BOOT_SEED, rows="shared")
                if not abs(estimate * 100 - row["mean_diff"]) <= MATCH_TOL:
                    raise Unavailable("the dev predictions do not reproduce the recorded scores")
                finite = crossed[np.isfinite(crossed)] * 100
                if finite.size:
                    low, high = S.percentile_interval(finite, ALPHA)
                    row.update(two_level_low=low, two_level_high=high, two_level_dropped=int(crossed.size - finite.size))
                    reps, basis = finite, "seeds × rows"
                rows_only, _ = S.bootstrap_replicates(splits, B=options.bootstrap, seed=BOOT_SEED, rows="shared",
                                                      resample_seeds=False)
                rows_only = rows_only[np.isfinite(rows_only)] * 100
                if rows_only.size >= 2:
                    row["row_sd"] = float(rows_only.std(ddof=1))
            except Unavailable as why:
                unavailable.setdefault(str(why), []).append(why.path or pairs.paths_a[0])
        row["verdict_basis"] = basis
        task_rows.append((row, pairs))
        replicates.append(reps)
    m = len(task_rows)
    adjusted = S.holm([r["perm_p"] for r, _ in task_rows])
    _verdicts([r for r, _ in task_rows], replicates, options)
    out = []
    for (row, pairs), holm_p in zip(task_rows, adjusted, strict=True):
        row.update(_bayes(pairs.a, pairs.b, options))
        row.update(holm_p=holm_p, holm_m=m, aso_m=m, aso_eps_min=_aso(pairs.a, pairs.b, m, options),
                   aso_eps_min_reverse=_aso(pairs.b, pairs.a, m, options), effect=options.effect)
        _power_with_rows(row, options)
        out.append(row)
    for bench, members in benchmarks(tasks).items():
        names = [t for t in members if t in pairs_of]
        if len(names) < 2:
            continue
        shared = sorted(set.intersection(*(set(pairs_of[t].seeds) for t in names)))
        a = np.array([np.mean([_at(pairs_of[t], s, "a") for t in names]) for s in shared])
        b = np.array([np.mean([_at(pairs_of[t], s, "b") for t in names]) for s in shared])
        sizes = {pairs_of[t].size for t in names}
        common = sizes.pop() if len(sizes) == 1 else pd.NA
        row = {**head, "train_size": common, "task": avg_key(bench), "n_tasks": len(names),
               "n_pairs": len(shared), "seeds": _seed_list(shared), **paired_stats(a, b, options),
               "two_level_low": math.nan, "two_level_high": math.nan, "two_level_dropped": pd.NA,
               "holm_p": math.nan, "holm_m": pd.NA, "aso_eps_min": _aso(a, b, 1, options),
               "aso_eps_min_reverse": _aso(b, a, 1, options), "aso_m": 1, "effect": options.effect,
               "n_rows": pd.NA, "row_sd": math.nan, "verdict_basis": "seeds", "at_chance_pooling": pd.NA,
               "at_chance_baseline": pd.NA}
        row.update(_bayes(a, b, options))
        _verdicts([row], [seed_replicates(a - b, options.bootstrap)], options)
        _power_with_rows(row, options)
        out.append(row)
    return out


def _verdicts(rows: list[dict], replicates: list[np.ndarray], options: Options) -> None:
    """Each row's verdict (better / worse / equivalent / undecided) from its replicates' percentile
    interval at Holm's step-down level over the family (:func:`~maxpoolbert.report.statistics.verdicts`)."""
    pvalues = [S.bootstrap_p(r) for r in replicates]
    divisors = S.holm_levels(pvalues)
    intervals = [S.percentile_interval(r, ALPHA / k) for r, k in zip(replicates, divisors, strict=True)]
    words = S.verdicts(intervals, list(divisors), options.rope)
    for row, (low, high), k, word in zip(rows, intervals, divisors, words, strict=True):
        row.update(verdict=word, verdict_low=low, verdict_high=high, verdict_level=1 - ALPHA / k, rope=options.rope)


def _power_with_rows(row: dict, options: Options) -> None:
    """The power columns that count the evaluation rows' noise too (``row_sd``: NaN without
    predictions, then these stay NaN)."""
    sd, rows_sd, n = row["std_diff"], row["row_sd"], int(row["n_pairs"])
    ok = n >= 2 and math.isfinite(sd) and math.isfinite(rows_sd)
    needed = S.seeds_needed_with_rows(sd, rows_sd, options.effect, alpha=ALPHA, power=POWER) if ok else None
    row.update(detectable_rows=S.detectable_with_rows(sd, rows_sd, n, ALPHA, POWER) if ok else math.nan,
               detectable_floor=S.detectable_with_rows(sd, rows_sd, math.inf, ALPHA, POWER) if ok else math.nan,
               seeds_needed_rows=pd.NA if needed is None else needed)


def _bayes(a: np.ndarray, b: np.ndarray, options: Options) -> dict[str, float]:
    """The Bayesian signed-rank test (Benavoli et al. 2014/2017, ``baycomp``) over the paired seeds with
    the ROPE: P(the arm is worse), P(practically equivalent), P(better), from BAYES_SAMPLES posterior
    draws (seed BOOT_SEED); NaN for fewer than 2 pairs."""
    out = {"bayes_worse": math.nan, "bayes_equivalent": math.nan, "bayes_better": math.nan}
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2:
        return out
    import warnings

    import baycomp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        worse, same, better = baycomp.SignedRankTest.probs(b[ok], a[ok], rope=options.rope, nsamples=BAYES_SAMPLES,
                                                           random_state=BOOT_SEED)
    return {"bayes_worse": float(worse), "bayes_equivalent": float(same), "bayes_better": float(better)}


def _at(pairs: _Pairs, seed: int, side: str) -> float:
    return float(getattr(pairs, side)[pairs.seeds.index(seed)])


def _aso(a: np.ndarray, b: np.ndarray, m: int, options: Options) -> float:
    if len(a) < 2:
        return math.nan
    return S.aso_epsilon_min(a, b, alpha=ALPHA, num_bootstrap=options.bootstrap, seed=BOOT_SEED,
                             num_comparisons=max(m, 1))


def _order_comparisons(table: pd.DataFrame, tasks: dict[str, TaskInfo], factors: Sequence[str] = ("pooling",)
                       ) -> pd.DataFrame:
    """Report order: factor (as given), model, table (main, then sizes), compared arm, then tasks in
    column order with each benchmark's average after its tasks."""
    column = {}
    for bench, members in benchmarks(tasks).items():
        for name in (*members, avg_key(bench)):
            column[name] = len(column)
    factor_rank = {f: i for i, f in enumerate(factors)}
    keys = [(factor_rank.get(r.factor, len(factor_rank)), r.model, 0 if r.table == MAIN else 1,
             size_key(r.train_size) if r.table != MAIN else (0, 0), pooling_key(r.baseline), pooling_key(r.pooling),
             column.get(r.task, len(column))) for r in table.itertuples()]
    order = sorted(range(len(table)), key=keys.__getitem__)
    return table.iloc[order].reset_index(drop=True)


def _avg_name(key: str, tasks: dict[str, TaskInfo]) -> str:
    for t in tasks.values():
        if avg_key(t.benchmark) == key:
            return f"{t.benchmark_name} avg"
    return key


# --------------------------------------------------------------------------- search budgets

BUDGET_COLUMNS = ["model", "task", "train_size", "pooling", "key", "select_on", "n_values", "n_runs", "budget",
                  "expected_best"]


def budget_table(candidates: pd.DataFrame, key: str, mode: str, tasks: dict[str, TaskInfo]) -> pd.DataFrame:
    """Expected best dev score ×100 of a search that tries ``budget`` of a cell's runs (each run: a
    value of ``key`` with a seed), drawn at random without replacement, per cell and pooling
    (``budget.csv``): Tang et al.'s estimator (:func:`~maxpoolbert.report.statistics.expected_chosen`).
    With ``--select-on all`` the expected maximum of the runs' dev scores; with ``half`` the expected
    odd-half score of the run the search chooses by its even-half score."""
    rows = []
    scored = candidates[candidates["score"].notna() & candidates["_select_score"].notna()]
    for (model, pooling, task, size), group in scored.groupby(CELL, dropna=False):
        curve = S.expected_chosen(group["_select_score"].to_numpy() * 100, group["score"].to_numpy() * 100)
        for n, value in enumerate(curve, start=1):
            rows.append({"model": model, "task": task, "train_size": size, "pooling": pooling, "key": key,
                         "select_on": mode, "n_values": group["_value"].nunique(), "n_runs": len(group),
                         "budget": n, "expected_best": value})
    out = pd.DataFrame(rows, columns=BUDGET_COLUMNS)
    out["train_size"] = out["train_size"].astype("Int64")
    return _sort(out, ["model", "task", "train_size", "pooling", "budget"], tasks)


# --------------------------------------------------------------------------- protocol


def _counted(values: Sequence[str]) -> str:
    """``a`` when every run has it, else ``a (12 runs), b (4 runs)`` most frequent first."""
    counts = Counter(values)
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{v} ({c} run{'s' if c != 1 else ''})"
                     for v, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _no_path(value: Any) -> str:
    """A checkpoint name without the machine's folders: an absolute path shows as its last part."""
    text = str(value)
    if text.startswith(("/", "~")) or (len(text) > 2 and text[1] == ":" and text[2] in "\\/"):
        return "…/" + Path(text.replace("\\", "/")).name
    return text


def _setting(settings: dict[str, Any], key: str) -> Any:
    return completed(settings, [key])[key]


def _checkpoint(settings: dict[str, Any]) -> str:
    value = _setting(settings, "model.name_or_path")
    return "not recorded" if value == UNSET or value is None else f"`{_no_path(value)}`"


def _versions(versions: dict[str, Any]) -> str:
    if not versions:
        return "not recorded"
    first = [k for k in ("python", "torch", "transformers", "lightning") if k in versions]
    return ", ".join(f"{k} {versions[k]}" for k in [*first, *sorted(set(versions) - set(first))])


def _hardware(hardware: dict[str, Any], device: Any) -> str:
    if not hardware and not device:
        return "not recorded"
    parts = []
    if hardware.get("cpu"):
        counts = ", ".join(f"{hardware[k]} {k}" for k in ("cores", "threads") if hardware.get(k) is not None)
        parts.append(f"CPU {hardware['cpu']}" + (f" ({counts})" if counts else ""))
    if hardware.get("gpu"):
        parts.append(f"GPU {hardware['gpu']}")
    if device:
        parts.append(f"device {device}")
    return "; ".join(parts)


def _precision(settings: dict[str, Any]) -> str:
    value = _setting(settings, "trainer.precision")
    return "32-true (Lightning's default)" if value is None else str(value)


def protocol(runs: pd.DataFrame, skipped: Sequence[dict[str, str]], options: Options,
             selection_table: pd.DataFrame | None = None, candidates: pd.DataFrame | None = None) -> list[str]:
    """The protocol block's bullet lines: model and checkpoint, libraries, hardware and precision,
    seeds, selection rule and budget, evaluation rule, runs used / failed / skipped, statistics."""
    total = len(runs)
    lines = []
    for model, group in runs.groupby("model", sort=True):
        checkpoints = [_checkpoint(s) for s in group["settings"]]
        hashes = [f"`{h[:12]}`" if isinstance(h, str) and h else "not recorded" for h in group["weights_sha256"]]
        digits = " (first 12 hex digits)" if any(h != "not recorded" for h in hashes) else ""
        lines.append(f"- Model `{model}`: checkpoint {_counted(checkpoints)}, weights SHA-256 "
                     f"{_counted(hashes)}{digits}.")
    lines.append(f"- Libraries: {_counted([_versions(v) for v in runs['versions']])}.")
    lines.append(f"- Hardware: {_counted([_hardware(h, d) for h, d in zip(runs['hardware'], runs['device'], strict=True)])}; "
                 f"precision {_counted([_precision(s) for s in runs['settings']])} (`trainer.precision`).")
    seeds_per_cell = {_seed_list(g["seed"]) for _, g in runs.groupby(CELL, dropna=False)}
    all_seeds = ", ".join(str(s) for s in sorted(set(int(s) for s in runs["seed"])))
    same = "every cell" if len(seeds_per_cell) == 1 else "not every cell has all of them: see `cells.csv`"
    lines.append(f"- Seeds: {all_seeds} ({same}).")
    if options.select is None:
        lines.append("- Selection: none; each cell is one configuration.")
    else:
        noun = scored_rows.noun(options.rows)
        where = (f"on the even-index {noun}; every reported number is on the odd-index rows"
                 if options.half else f"on all {noun}, which are also reported (optimistic)")
        budget = []
        source = candidates if candidates is not None and not candidates.empty else None
        if source is not None:
            for pooling, g in sorted(source.groupby("pooling"), key=lambda kv: pooling_key(kv[0])):
                per_cell = g.groupby(CELL, dropna=False)["_value"].nunique()
                values = ", ".join(sorted(set(g["_value"].dropna()), key=_json_sort))
                budget.append(f"`{pooling}` {_span(per_cell)} value(s) per cell ({values}), "
                              f"{_span(g.groupby(CELL, dropna=False).size())} run(s) per cell")
        lines.append(f"- Selection: `{options.select}`, the value with the best mean dev score over seeds per "
                     f"cell, chosen {where} (`--select-on {options.select_on}`). Budget: "
                     + ("; ".join(budget) if budget else "see `selection.csv`") + ".")
    rules = [f"`eval.select={_setting(s, 'eval.select')}`" for s in runs["settings"]]
    lines.append(f"- Evaluation: {_counted(rules)} (`last`: the last dev evaluation; `best`: the best "
                 "one, a selection on the dev set).")
    failed = int((runs["degenerate"] == True).sum())  # noqa: E712
    unknown = int(runs["degenerate"].isna().sum())
    lines.append(f"- Runs: {total} used, {failed} failed (dev score at or below the majority-class score, "
                 f"or non-finite: counted in `cells.csv`, kept in every statistic)"
                 + (f", {unknown} of unknown status" if unknown else "")
                 + f"; {len(skipped)} skipped (listed at the end).")
    exact = f"exact (all sign patterns) for up to {EXACT_MAX_N} pairs, else {PERMUTATIONS:,} random ones"
    lines.append(f"- Statistics: 95% intervals; bootstraps with B = {options.bootstrap:,} resamples and seed "
                 f"{BOOT_SEED} (percentile intervals); paired permutation test two-sided, {exact}; Holm over the "
                 f"tasks of each table per pooling; ASO ε_min at α = {ALPHA:g}, Bonferroni over those tasks; power "
                 f"of a two-sided paired t-test at α = {ALPHA:g}, {POWER:.0%} power, effect {_points(options.effect)}." + _scored_rows(options))
    return lines


def _scored_rows(options: Options) -> str:
    noun = scored_rows.noun(options.rows) + (" (data.heldout_size)" if options.rows == scored_rows.HELDOUT else "")
    if options.half:
        return f" All scores are on the odd-index {noun}."
    return f" All scores are on the {noun}." if options.rows == "heldout" else ""


def _points(x: float) -> str:
    return f"{x:g} point{'' if x == 1 else 's'}"


def _json_sort(text: str) -> tuple:
    import json

    value = json.loads(text)
    return (0, float(value), text) if isinstance(value, int | float) and not isinstance(value, bool) else (1, 0.0, text)


def _span(counts: pd.Series) -> str:
    low, high = int(counts.min()), int(counts.max())
    return str(low) if low == high else f"{low}–{high}"
