"""Estimators for the report: per-cell summaries, paired bootstrap and permutation tests, Holm's
correction, Almost Stochastic Order, power of a paired t-test and expected-maximum curves.

Conventions shared by every function here:

* **Unit-agnostic.** Scores are plain floats in whatever unit the caller uses (fractions such as
  ``0.6534`` accuracy, or ×100 points); nothing is rescaled, and results come back in the unit
  that went in. The only absolute constant is the ``1e-9`` tolerance of the degenerate-run rule
  in :func:`cell_summary` (the report's ``majority_score + 1e-9``).
* **Paired** functions take per-seed differences ``pooling - cls`` (or two arrays paired by
  seed). Non-finite differences are dropped first: a pair whose score is NaN has no difference,
  the same way the report leaves non-finite runs out of every mean.
* **Deterministic.** Everything random draws from ``np.random.default_rng(seed)``, so equal
  inputs and ``seed`` give equal outputs.

Only numpy and scipy are imported. statsmodels and deepsig are used by the tests only, when
installed, as independent cross-checks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import optimize, special, stats

from maxpoolbert.core.metrics import names_of

__all__ = [
    "BATCH_METRICS",
    "BootstrapCI",
    "SplitRows",
    "aso_epsilon_min",
    "batch_metric",
    "bootstrap_p",
    "bootstrap_replicates",
    "cell_summary",
    "detectable_with_rows",
    "expected_chosen",
    "expected_max",
    "expected_max_dodge",
    "holm",
    "holm_levels",
    "min_detectable",
    "paired_bootstrap_ci",
    "percentile_interval",
    "permutation_p",
    "power_sentence",
    "prob_better",
    "seeds_needed",
    "seeds_needed_with_rows",
    "t_test_power",
    "two_level_bootstrap_ci",
    "verdicts",
    "violation_ratio",
    "wilcoxon_p",
]

NAN = math.nan


def _finite(values) -> np.ndarray:
    """``values`` as a flat float64 array without its non-finite entries."""
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def _percentile_interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    """The ``alpha/2`` and ``1 - alpha/2`` percentiles (numpy's linear interpolation)."""
    low, high = np.percentile(values, [50.0 * alpha, 100.0 - 50.0 * alpha])
    return float(low), float(high)


# --------------------------------------------------------------------------- one cell


def cell_summary(scores, majority_score: float | None = None, alpha: float = 0.05) -> dict:
    """Summary statistics of one table cell (the runs of one model, pooling, task, size).

    Keys:

    * ``n_runs``: all runs given; ``n``: those with a finite score, which every numeric statistic
      uses; ``n_nan``: runs with a non-finite score (NaN, e.g. Pearson of constant predictions).
    * ``n_failed``: the count of failed runs, i.e. the ``n_nan`` runs plus the finite runs scoring
      at or below ``majority_score + 1e-9`` when a finite ``majority_score`` is given. Failed
      finite runs are *not* dropped: they stay in every statistic; only non-finite scores are
      left out of the numbers (and counted here).
    * ``mean``; ``std``: sample standard deviation (ddof=1), NaN for n < 2.
    * ``ci_low``, ``ci_high``: Student-t interval of the mean,
      ``mean ± t_{1-alpha/2, n-1} · std / sqrt(n)``; NaN for n < 2 (equal to the mean when all
      scores are equal, where ``scipy.stats.t.interval`` with scale 0 would give NaN).
    * ``median``, ``min``, ``max``: NaN when n = 0.

    Unit-agnostic (see the module docstring); the 1e-9 tolerance is absolute, in score units.
    """
    x = np.asarray(scores, dtype=np.float64).ravel()
    ok = np.isfinite(x)
    v = x[ok]
    n = int(v.size)
    n_nan = int(x.size - n)
    n_failed = n_nan
    if majority_score is not None and math.isfinite(majority_score):
        n_failed += int(np.count_nonzero(v <= majority_score + 1e-9))
    out = {"n_runs": int(x.size), "n": n, "n_nan": n_nan, "n_failed": n_failed,
           "mean": NAN, "std": NAN, "ci_low": NAN, "ci_high": NAN,
           "median": NAN, "min": NAN, "max": NAN}
    if n == 0:
        return out
    mean = float(v.mean())
    out.update(mean=mean, median=float(np.median(v)), min=float(v.min()), max=float(v.max()))
    if n >= 2:
        std = float(v.std(ddof=1))
        half = float(stats.t.ppf(1.0 - alpha / 2.0, n - 1)) * std / math.sqrt(n)
        out.update(std=std, ci_low=mean - half, ci_high=mean + half)
    return out


# --------------------------------------------------------------------------- paired seeds


def paired_bootstrap_ci(diffs, B: int = 10_000, seed: int = 0,
                        alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean paired difference.

    Resamples the pairs (seeds) with replacement ``B`` times, all at once: the index matrix is
    ``np.random.default_rng(seed).integers(0, n, size=(B, n))``; each row's mean of
    ``diffs[idx]`` is one replicate, and the interval is the ``alpha/2`` and ``1 - alpha/2``
    percentiles of the replicates (``np.percentile``, linear interpolation). Efron & Tibshirani
    (1993), ch. 13. Non-finite differences are dropped; ``(nan, nan)`` for fewer than 2 pairs.
    Unit-agnostic.
    """
    d = _finite(diffs)
    n = d.size
    if n < 2:
        return NAN, NAN
    idx = np.random.default_rng(seed).integers(0, n, size=(B, n))
    return _percentile_interval(d[idx].mean(axis=1), alpha)


def permutation_p(diffs, n_resamples: int = 100_000, seed: int = 0, exact_max_n: int = 10) -> float:
    """Two-sided paired permutation (sign-flip) test of the mean difference.

    Under H0 each difference is as likely to have either sign, so the null distribution of the
    statistic ``mean(d)`` is that of ``mean(s * d)`` over random signs ``s``. EXACT (all ``2**n``
    sign patterns) for ``n <= exact_max_n`` (10); beyond that, ``n_resamples`` random sign
    patterns from ``np.random.default_rng(seed)``, with the +1 correction of Phipson & Smyth
    (2010): ``p = (count + 1) / (n_resamples + 1)``. The p-value follows
    ``scipy.stats.permutation_test(..., permutation_type='samples', alternative='two-sided')``:
    ``min(1, 2 * min(P(T <= t), P(T >= t)))``, comparing with a relative tolerance of
    ``100 * eps`` so that statistics equal in exact arithmetic count as ties; for the exact test
    the two give identical p-values.

    Non-finite differences are dropped. NaN for fewer than 2 pairs and when all differences are
    0 (no evidence either way; the test is undefined rather than p = 1). Unit-agnostic.
    """
    d = _finite(diffs)
    n = d.size
    if n < 2 or not np.any(d != 0):
        return NAN
    observed = d.mean()
    if n <= exact_max_n:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        null = ((1 - 2 * bits) * d).mean(axis=1)
        less, greater, adjustment, total = 0, 0, 0, 2**n
    else:
        rng = np.random.default_rng(seed)
        null, less, greater, adjustment, total = None, 0, 0, 1, n_resamples
    gamma = abs(observed) * 100 * np.finfo(np.float64).eps
    if null is not None:
        less = np.count_nonzero(null <= observed + gamma)
        greater = np.count_nonzero(null >= observed - gamma)
    else:
        chunk = max(1, 2_000_000 // n)
        for start in range(0, n_resamples, chunk):
            size = min(chunk, n_resamples - start)
            signs = 1 - 2 * rng.integers(0, 2, size=(size, n))
            part = (signs * d).mean(axis=1)
            less += np.count_nonzero(part <= observed + gamma)
            greater += np.count_nonzero(part >= observed - gamma)
    p_less = (less + adjustment) / (total + adjustment)
    p_greater = (greater + adjustment) / (total + adjustment)
    return float(min(1.0, 2.0 * min(p_less, p_greater)))


def wilcoxon_p(diffs) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the paired differences.

    ``scipy.stats.wilcoxon(d)`` with its defaults: zero differences dropped (``'wilcox'``), the
    exact null distribution for small n without ties or zeros, the normal approximation
    otherwise. Non-finite differences are dropped; NaN for fewer than 2 pairs or all differences
    0. Unit-agnostic (ranks only).
    """
    d = _finite(diffs)
    if d.size < 2 or not np.any(d != 0):
        return NAN
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return float(stats.wilcoxon(d).pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values (Holm 1979).

    With the m non-NaN p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted value
    of ``p_(i)`` is ``min(1, max_{j <= i} (m - j + 1) * p_(j))``: monotone in the raw p-values and
    capped at 1. Rejecting where adjusted ``<= alpha`` controls the family-wise error rate at
    alpha. NaN entries stay NaN and are not counted in m. Returns an array shaped like the input.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    flat = p.ravel()
    out = np.full(flat.shape, NAN)
    idx = np.flatnonzero(~np.isnan(flat))
    m = idx.size
    if m:
        order = idx[np.argsort(flat[idx], kind="stable")]
        scaled = (m - np.arange(m)) * flat[order]
        out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out.reshape(p.shape)


def prob_better(a, b) -> float:
    """P(a > b) over paired seeds: the fraction of pairs with ``a > b``, ties counting 1/2.

    ``a`` and ``b`` are paired by position (e.g. pooling and ``cls`` scores of the same seeds);
    pairs with a non-finite score are dropped; NaN when none is left. Unit-agnostic.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"prob_better needs paired scores, got {a.size} and {b.size}")
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return NAN
    a, b = a[ok], b[ok]
    return float(np.mean((a > b) + 0.5 * (a == b)))


# --------------------------------------------------------------------------- Almost Stochastic Order


def _quantiles_on_grid(sorted_scores: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Empirical quantile function ``F^{-1}(t) = v_(ceil(n t))`` (clipped to 1..n) of the
    ascending ``sorted_scores`` (last axis), evaluated on the grid ``t``."""
    n = sorted_scores.shape[-1]
    idx = np.clip(np.ceil(n * t).astype(np.intp) - 1, 0, n - 1)
    return sorted_scores[..., idx]


def _violation_ratio_sorted(sa: np.ndarray, sb: np.ndarray, dt: float) -> np.ndarray:
    t = np.arange(dt, 1.0, dt)
    f, g = _quantiles_on_grid(sa, t), _quantiles_on_grid(sb, t)
    sq = (g - f) ** 2
    total = sq.sum(axis=-1) * dt
    violated = np.where(f < g, sq, 0.0).sum(axis=-1) * dt
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, violated / np.where(total > 0, total, 1.0), 0.5)


def violation_ratio(scores_a, scores_b, dt: float = 0.005) -> float:
    """The violation ratio ``eps_W2(F, G)`` of del Barrio, Cuesta-Albertos & Matrán (2018).

    With ``F^{-1}``, ``G^{-1}`` the empirical quantile functions of A's and B's scores,
    ``eps = ∫_{V} (F^{-1} - G^{-1})^2 dt / ∫_0^1 (F^{-1} - G^{-1})^2 dt`` where
    ``V = {t : F^{-1}(t) < G^{-1}(t)}`` is where "A stochastically dominates B" is violated;
    0 means A dominates, 1 that B does. Both integrals are Riemann sums on the grid
    ``t = dt, 2 dt, ... < 1``; 0.5 when the two quantile functions coincide (zero distance).
    Non-finite scores are dropped; NaN if either side is empty. Scale-invariant.
    """
    a, b = np.sort(_finite(scores_a)), np.sort(_finite(scores_b))
    if a.size == 0 or b.size == 0:
        return NAN
    return float(_violation_ratio_sorted(a, b, dt))


def aso_epsilon_min(scores_a, scores_b, alpha: float = 0.05, num_bootstrap: int = 1000,
                    seed: int = 0, num_comparisons: int = 1, dt: float = 0.005) -> float:
    """Almost Stochastic Order: the minimal ``eps`` for which A is eps-almost stochastically
    larger (better) than B, ``eps_min`` of Dror, Shlomov & Reichart (ACL 2019, "Deep
    Dominance - How to Properly Compare Deep Neural Models"), computed as in the ``deepsig``
    library (Ulmer, Hardmeier & Frellsen 2022), from del Barrio et al. (2018).

    Algorithm (written from the papers and deepsig's documented algorithm, not its code):

    1. ``eps = violation_ratio(A, B, dt)`` on the quantile grid (see :func:`violation_ratio`).
    2. Bootstrap: ``num_bootstrap`` times, resample A (``n`` scores) and B (``m`` scores)
       independently with replacement and recompute the ratio ``eps*`` (deepsig draws the same
       resamples as its quantile functions at uniform points). Draws: with
       ``rng = np.random.default_rng(seed)``, ``rng.integers(0, n, size=(num_bootstrap, n))``
       then the same for B, as indices into the ascending scores (so the input order does not
       matter).
    3. ``sigma = std(sqrt(n m / (n + m)) * (eps* - eps))`` (ddof=0), the asymptotic standard
       deviation of the scaled ratio.
    4. ``eps_min = eps + sqrt((n + m) / (n m)) * sigma * Phi^{-1}(1 - alpha / num_comparisons)``
       clipped to [0, 1]: the upper confidence bound of the violation ratio at confidence
       ``1 - alpha / num_comparisons`` (Bonferroni; deepsig's ``confidence_level=1-alpha``).

    Reading: ``eps_min < 0.5`` says A is almost stochastically better than B (the smaller, the
    stronger); deepsig's docs suggest 0.2 for a stricter verdict. Known difference from
    deepsig 1.2.8: its numerator sum skips the first grid point (``diff[1:]``) while its
    denominator keeps it; here both integrals use the same grid, so eps*(A, B) + eps*(B, A) = 1
    holds exactly. The effect is below 1/len(grid) of the integral.

    Non-finite scores are dropped; NaN if either side is empty. Scale-invariant.
    """
    a, b = np.sort(_finite(scores_a)), np.sort(_finite(scores_b))
    n, m = a.size, b.size
    if n == 0 or m == 0:
        return NAN
    eps = float(_violation_ratio_sorted(a, b, dt))
    rng = np.random.default_rng(seed)
    boot_a = np.sort(a[rng.integers(0, n, size=(num_bootstrap, n))], axis=1)
    boot_b = np.sort(b[rng.integers(0, m, size=(num_bootstrap, m))], axis=1)
    boot = _violation_ratio_sorted(boot_a, boot_b, dt)
    const = math.sqrt(n * m / (n + m))
    sigma = float(np.std(const * (boot - eps)))
    z = float(stats.norm.ppf(1.0 - alpha / num_comparisons))
    return float(np.clip(eps + sigma * z / const, 0.0, 1.0))


# --------------------------------------------------------------------------- power


def t_test_power(n: int, delta: float, sd_diff: float, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs against a true mean difference
    ``delta`` when the paired differences have standard deviation ``sd_diff``:
    ``P(|T| > t_{1-alpha/2, n-1})`` for ``T ~ nct(df=n-1, nc=delta/sd_diff*sqrt(n))``
    (``scipy.stats.nct``; both tails as upper tails, ``P(T < -t) = P(-T > t)``, which scipy
    computes where its lower tail would be NaN). NaN for n < 2. ``delta`` and ``sd_diff`` share a
    unit."""
    if n < 2:
        return NAN
    df = n - 1
    crit = stats.t.ppf(1.0 - alpha / 2.0, df)
    if sd_diff == 0:
        return 1.0 if delta != 0 else float(alpha)
    nc = delta / sd_diff * math.sqrt(n)
    # The lower tail P(T <= -crit) as the upper tail of -T ~ nct(df, -nc): the same number, but
    # scipy's nct.cdf returns NaN far in the tail (df=1, nc > ~19) where nct.sf gives 0.
    upper, lower = (float(stats.nct.sf(crit, df, c)) for c in (nc, -nc))
    return (0.0 if math.isnan(upper) else upper) + (0.0 if math.isnan(lower) else lower)


def seeds_needed(sd_diff: float, delta: float = 1.0, alpha: float = 0.05, power: float = 0.8,
                 max_n: int = 10_000) -> int | None:
    """The number of paired seeds a two-sided paired t-test at level ``alpha`` needs to detect a
    mean difference ``delta`` with probability ``power``: the smallest n >= 2 with
    ``t_test_power(n, delta, sd_diff, alpha) >= power`` (exact noncentral t, found by doubling
    then bisection; the power grows with n). ``sd_diff`` is the standard deviation of the paired
    differences, in the unit of ``delta``.

    None when ``max_n`` seeds do not reach the power, when ``delta`` is 0 or when ``sd_diff`` is
    not finite; 2 when ``sd_diff`` is 0 and ``delta`` is not (no noise).
    """
    delta = abs(delta)
    if not (math.isfinite(sd_diff) and math.isfinite(delta)) or delta == 0 or max_n < 2:
        return None
    if sd_diff == 0:
        return 2

    return smallest_n(lambda n: t_test_power(n, delta, sd_diff, alpha) >= power, max_n)


def smallest_n(reaches, max_n: int) -> int | None:
    """The smallest n in [2, ``max_n``] with ``reaches(n)`` (monotone in n: False, then True), by
    doubling then bisection; None when ``reaches(max_n)`` is False."""
    if reaches(2):
        return 2
    low, high = 2, min(4, max_n)  # reaches(low) is False
    while not reaches(high):
        if high >= max_n:
            return None
        low, high = high, min(2 * high, max_n)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high


def min_detectable(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest mean difference that ``n`` paired seeds detect with probability ``power``
    in a two-sided paired t-test at level ``alpha``: the root in delta of
    ``t_test_power(n, delta, sd_diff, alpha) = power`` (``scipy.optimize.brentq``). In the unit
    of ``sd_diff``; NaN for n < 2 or non-finite ``sd_diff``; 0 when ``sd_diff`` is 0 (or when
    ``power <= alpha``, which a zero difference already has)."""
    if n < 2 or not math.isfinite(sd_diff):
        return NAN
    sd = abs(sd_diff)
    if sd == 0 or power <= alpha:
        return 0.0
    z = stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power)
    high = max(z, 1.0) * sd / math.sqrt(n)
    while t_test_power(n, high, sd, alpha) < power:
        high *= 2.0
    return float(optimize.brentq(lambda d: t_test_power(n, d, sd, alpha) - power, 0.0, high,
                                 xtol=1e-12 * high, rtol=1e-12))


def _with_unit(value: float, unit: str) -> str:
    text = f"{value:g}"
    return f"{text} {unit[:-1] if text == '1' and unit.endswith('s') else unit}"


def power_sentence(n: int, sd_diff: float, delta: float = 1.0, alpha: float = 0.05,
                   power: float = 0.8, unit: str = "points", max_n: int = 10_000) -> str:
    """One sentence for the report, e.g. ``"5 seeds detect 3.1 points; 1 point would need 46"``:
    the :func:`min_detectable` difference of ``n`` seeds and the :func:`seeds_needed` for
    ``delta``, at the given ``alpha`` and ``power``. ``unit`` names the unit of ``sd_diff`` and
    ``delta`` (the report passes ×100 points)."""
    if n < 2 or not math.isfinite(sd_diff):
        return f"{n} seed{'s' if n != 1 else ''}: the spread of the differences is unknown"
    detect = min_detectable(sd_diff, n, alpha, power)
    need = seeds_needed(sd_diff, delta, alpha, power, max_n)
    need_text = str(need) if need is not None else f"more than {max_n}"
    return (f"{n} seeds detect {detect:.1f} {unit}; "
            f"{_with_unit(abs(delta), unit)} would need {need_text}")


# --------------------------------------------------------------------------- search budgets


def _log_comb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return special.gammaln(a + 1) - special.gammaln(b + 1) - special.gammaln(a - b + 1)


def _budgets(budgets, big_n: int) -> np.ndarray:
    """The budgets n asked for (default: 1..N), each within 1..N when there are scores."""
    ns = np.arange(1, big_n + 1) if budgets is None else np.asarray(budgets, dtype=np.int64).ravel()
    if big_n and ns.size and (ns.min() < 1 or ns.max() > big_n):
        raise ValueError(f"budgets must lie in 1..{big_n}, got {ns.min()}..{ns.max()}")
    return ns


def expected_max(scores, budgets=None) -> np.ndarray:
    """Expected best score when ``n`` of the ``N`` tried configurations are picked, for each
    ``n`` in ``budgets`` (default 1..N): the unbiased estimator of Tang et al. (ACL 2020,
    "Showing Your Work Doesn't Always Work"), i.e. sampling *without* replacement from the N
    observed scores,

        E[max_n] = sum_{i=n}^{N} v_(i) * C(i-1, n-1) / C(N, n)

    over the ascending scores ``v_(1..N)`` (the largest of a random n-subset is ``v_(i)`` with
    probability ``C(i-1, n-1)/C(N, n)``). ``n = 1`` gives the mean, ``n = N`` the maximum; the
    curve is non-decreasing. Weights via log-gamma (relative error ~1e-13). Non-finite scores are
    dropped (N counts finite scores); NaN for every budget when none is left. Unit-agnostic.
    """
    v = np.sort(_finite(scores))
    big_n = v.size
    ns = _budgets(budgets, big_n)
    if big_n == 0:
        return np.full(ns.shape, NAN)
    i = np.arange(1, big_n + 1, dtype=np.float64)[None, :]
    n = ns.astype(np.float64)[:, None]
    log_w = _log_comb(i - 1, n - 1) - _log_comb(np.float64(big_n), n)
    weights = np.where(i >= n, np.exp(np.where(i >= n, log_w, 0.0)), 0.0)
    return weights @ v


def expected_chosen(select_scores, report_scores, budgets=None) -> np.ndarray:
    """Expected *reported* score of the configuration that a search over ``n`` of the ``N`` tried
    configurations (a random n-subset, drawn without replacement) chooses by its *selection*
    score, for each ``n`` in ``budgets`` (default 1..N): :func:`expected_max`'s weights (Tang et
    al. 2020) applied to the reported scores ordered by the selection scores,

        E[report of the chosen] = sum_{i=n}^{N} r_[i] * C(i-1, n-1) / C(N, n)

    where ``r_[i]`` is the reported score of the configuration with the i-th smallest selection
    score (the chosen one of a random n-subset is that configuration with probability
    ``C(i-1, n-1)/C(N, n)``). Configurations with tied selection scores share the mean of their
    reported scores (a tie is broken at random). With ``select_scores == report_scores`` this is
    :func:`expected_max`; with selection on one half of the dev rows and reporting on the other it
    is the honest budget curve (no reported number took part in the choice). Pairs with a
    non-finite value are dropped; NaN for every budget when none is left. Unit-agnostic.
    """
    s = np.asarray(select_scores, dtype=np.float64).ravel()
    r = np.asarray(report_scores, dtype=np.float64).ravel()
    if s.shape != r.shape:
        raise ValueError(f"expected_chosen needs paired scores, got {s.size} and {r.size}")
    ok = np.isfinite(s) & np.isfinite(r)
    s, r = s[ok], r[ok]
    big_n = s.size
    ns = _budgets(budgets, big_n)
    if big_n == 0:
        return np.full(ns.shape, NAN)
    order = np.argsort(s, kind="stable")
    s, r = s[order], r[order]
    _, group = np.unique(s, return_inverse=True)
    r = (np.bincount(group, weights=r) / np.bincount(group))[group]
    i = np.arange(1, big_n + 1, dtype=np.float64)[None, :]
    n = ns.astype(np.float64)[:, None]
    log_w = _log_comb(i - 1, n - 1) - _log_comb(np.float64(big_n), n)
    weights = np.where(i >= n, np.exp(np.where(i >= n, log_w, 0.0)), 0.0)
    return weights @ r


def expected_max_dodge(scores, n):
    """Expected best score of ``n`` configurations drawn *with* replacement from the empirical
    distribution of the N observed scores (Dodge et al. 2019, "Show Your Work"):

        E[max_n] = sum_i v_(i) * (F(v_(i))^n - F(v_(i-1))^n),  F(v_(i)) = i / N

    over the ascending scores (ties telescope to the empirical CDF). Repeated draws make it at
    most :func:`expected_max` for 1 < n <= N: Tang et al. (2020) show it is biased; here for
    comparison. ``n`` is an int (float
    returned) or an array of ints (array returned). Non-finite scores are dropped. Unit-agnostic.
    """
    v = np.sort(_finite(scores))
    big_n = v.size
    ns = np.asarray(n, dtype=np.float64)
    if big_n == 0:
        out = np.full(ns.shape, NAN)
    else:
        i = np.arange(1, big_n + 1, dtype=np.float64)
        nn = ns[..., None]
        out = (((i / big_n) ** nn - ((i - 1) / big_n) ** nn) * v).sum(axis=-1)
    return float(out) if ns.ndim == 0 else out


# --------------------------------------------------------------------------- vectorised metrics
#
# Metrics of many resamples at once: every row of an (N, R) matrix is one resample. Class metrics
# work on integer class codes (positions in the sorted union of label and prediction values),
# rank metrics on order-preserving integer codes per row, so that a bootstrap resample needs no
# sorting: its ranks follow from counting codes.


def _class_counts(pc: np.ndarray, lc: np.ndarray, k: int):
    """Per row: true counts, predicted counts and true positives of each of ``k`` classes."""
    rows = pc.shape[0]
    off = (np.arange(rows, dtype=np.intp) * k)[:, None]
    lflat = lc + off

    def count(codes):
        return np.bincount(codes, minlength=rows * k).reshape(rows, k).astype(np.float64)

    return count(lflat.ravel()), count((pc + off).ravel()), count(lflat[pc == lc])


def _f1_from_counts(t: np.ndarray, p: np.ndarray, tp: np.ndarray) -> np.ndarray:
    den = t + p
    return np.where(den > 0, 2.0 * tp / np.where(den > 0, den, 1.0), 0.0)


def _mcc_from_counts(t, p, tp) -> np.ndarray:
    """scikit-learn's ``matthews_corrcoef`` from class counts; 0 where it is undefined."""
    n = t.sum(axis=1)
    cov_tp = tp.sum(axis=1) * n - (t * p).sum(axis=1)
    cov_pp = n * n - (p * p).sum(axis=1)
    cov_tt = n * n - (t * t).sum(axis=1)
    den = cov_pp * cov_tt
    return np.where(den > 0, cov_tp / np.sqrt(np.where(den > 0, den, 1.0)), 0.0)


def _macro_f1_from_counts(t, p, tp) -> np.ndarray:
    """Mean per-class F1 over the classes present in the row's labels or predictions."""
    present = (t + p) > 0
    return _f1_from_counts(t, p, tp).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair; NaN where either row is constant (as scipy), clipped to ±1."""
    xm = x - x.mean(axis=1, keepdims=True)
    ym = y - y.mean(axis=1, keepdims=True)
    num = np.einsum("ij,ij->i", xm, ym)
    den = np.sqrt(np.einsum("ij,ij->i", xm, xm) * np.einsum("ij,ij->i", ym, ym))
    constant = (x.min(axis=1) == x.max(axis=1)) | (y.min(axis=1) == y.max(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(num / den, -1.0, 1.0)
    return np.where(constant, NAN, r)


def _row_codes(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense order-preserving integer codes of each row (equal values share a code) and the
    number of codes needed (max over rows)."""
    order = np.argsort(x, axis=1, kind="stable")
    xs = np.take_along_axis(x, order, axis=1)
    step = np.zeros(x.shape, dtype=np.intp)
    step[:, 1:] = xs[:, 1:] != xs[:, :-1]
    dense = np.cumsum(step, axis=1)
    codes = np.empty_like(dense)
    np.put_along_axis(codes, order, dense, axis=1)
    return codes, int(dense[:, -1].max()) + 1 if x.shape[1] else 1


def _ranks_from_codes(codes: np.ndarray, u: int) -> np.ndarray:
    """Average ranks (1-based, ties averaged like ``scipy.stats.rankdata``) of each row, given
    order-preserving codes in ``[0, u)``: a value's rank is the number of smaller values plus
    the mean position among its equals."""
    rows = codes.shape[0]
    flat = codes + (np.arange(rows, dtype=np.intp) * u)[:, None]
    counts = np.bincount(flat.ravel(), minlength=rows * u).reshape(rows, u)
    below = np.cumsum(counts, axis=1) - counts
    return (below + (counts + 1) / 2.0).ravel()[flat]


def _spearman_from_codes(pcodes, pu, lranks, lconst) -> np.ndarray:
    r = _pearson_rows(_ranks_from_codes(pcodes, pu), lranks)
    pconst = pcodes.min(axis=1) == pcodes.max(axis=1)
    return np.where(pconst | lconst, NAN, r)


def _class_codes(*arrays: np.ndarray) -> tuple[list[np.ndarray], int, int]:
    """Codes of every array in the sorted union of their values, the number of classes, and the
    code of the positive class 1 (``-1`` when absent)."""
    uniq, inv = np.unique(np.concatenate([np.ravel(a) for a in arrays]), return_inverse=True)
    out, start = [], 0
    for a in arrays:
        out.append(inv[start:start + np.size(a)].reshape(np.shape(a)).astype(np.intp))
        start += np.size(a)
    hit = np.flatnonzero(uniq == 1)
    return out, len(uniq), int(hit[0]) if hit.size else -1


def _class_metric(name: str, counts, acc_hits: np.ndarray, pos: int) -> np.ndarray:
    if name == "accuracy":
        return acc_hits
    t, p, tp = counts
    if name == "f1":
        if pos < 0:
            return np.zeros(t.shape[0])
        return _f1_from_counts(t[:, pos], p[:, pos], tp[:, pos])
    if name == "mcc":
        return _mcc_from_counts(t, p, tp)
    return _macro_f1_from_counts(t, p, tp)


CLASS_METRICS, RANK_METRICS = names_of("class"), names_of("rank")
BATCH_METRICS = CLASS_METRICS + RANK_METRICS
"""Metric names :func:`batch_metric` and :func:`two_level_bootstrap_ci` know: those of
:data:`maxpoolbert.core.metrics.METRICS`."""


def _check_metric(name: str) -> None:
    if name not in BATCH_METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(BATCH_METRICS)}")


def batch_metric(name: str, preds, labels) -> np.ndarray:
    """A metric of ``maxpoolbert.core.metrics.METRICS`` for every row of ``preds`` against the same
    row of ``labels`` (both shaped (N, R); 1-D inputs are one row), vectorised over rows.

    Conventions as scikit-learn / scipy: ``accuracy``; ``f1``: binary F1 of class 1 (labels
    0/1), 0 without any positive label or prediction; ``mcc``: Matthews correlation
    (binary or multiclass), 0 when undefined; ``macro_f1``: mean per-class F1 over the classes
    present in the row's labels or predictions; ``pearson``: NaN for a constant row;
    ``spearman``: Pearson of the ranks, ties averaged as ``scipy.stats.spearmanr``, NaN for a
    constant row or a row with NaN. Returns float64 of shape (N,).
    """
    _check_metric(name)
    p = np.atleast_2d(np.asarray(preds))
    y = np.atleast_2d(np.asarray(labels))
    p, y = np.broadcast_arrays(p, y)
    if name in CLASS_METRICS:
        (pc, lc), k, pos = _class_codes(p, y)
        hits = (pc == lc).mean(axis=1)
        counts = _class_counts(pc, lc, k) if name != "accuracy" else None
        return _class_metric(name, counts, hits, pos)
    pf, yf = p.astype(np.float64), y.astype(np.float64)
    if name == "pearson":
        return _pearson_rows(pf, yf)
    lcodes, lu = _row_codes(yf)
    pcodes, pu = _row_codes(pf)
    lconst = lcodes.min(axis=1) == lcodes.max(axis=1)
    r = _spearman_from_codes(pcodes, pu, _ranks_from_codes(lcodes, lu), lconst)
    return np.where(np.isnan(pf).any(axis=1) | np.isnan(yf).any(axis=1), NAN, r)


# --------------------------------------------------------------------------- two-level bootstrap


@dataclass(frozen=True, eq=False)
class SplitRows:
    """One dev split of a task, paired on seeds and on rows, for :func:`two_level_bootstrap_ci`.

    ``labels``: (R,) gold labels of the split's R dev rows. ``preds_a``, ``preds_b``: (S, R)
    predictions of model A and model B; row s of both comes from the runs with the s-th shared
    seed. ``metrics``: names from ``maxpoolbert.core.metrics.METRICS`` computed on this split.

    A task is a list of splits: MNLI is two (matched, mismatched; ``metrics=("accuracy",)``
    each), MRPC one with ``("f1", "accuracy")``, STS-B one with ``("pearson", "spearman")``. The
    task score is the mean of all metric values over all splits, as
    ``maxpoolbert.core.metrics.glue_score`` (the mean of a task's metrics).
    """

    labels: np.ndarray
    preds_a: np.ndarray
    preds_b: np.ndarray
    metrics: tuple[str, ...]

    def __post_init__(self):
        labels = np.asarray(self.labels).ravel()
        preds_a, preds_b = np.atleast_2d(self.preds_a), np.atleast_2d(self.preds_b)
        metrics = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
        if preds_a.shape != preds_b.shape or preds_a.shape[1] != labels.size:
            raise ValueError(f"preds_a {preds_a.shape} and preds_b {preds_b.shape} must both be "
                             f"(seeds, {labels.size} rows)")
        if labels.size == 0 or not metrics:
            raise ValueError("a split needs rows and at least one metric")
        for name in metrics:
            _check_metric(name)
        if labels.dtype.kind == "f" and np.isnan(labels).any():
            raise ValueError("labels contain NaN")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "preds_a", preds_a)
        object.__setattr__(self, "preds_b", preds_b)
        object.__setattr__(self, "metrics", metrics)


class _Prepared:
    """What a split's metrics need, computed once on the original (unresampled) arrays."""

    def __init__(self, split: SplitRows):
        self.split = split
        self.rows = split.labels.size
        names = set(split.metrics)
        if names & set(CLASS_METRICS):
            (self.lc, self.ac, self.bc), self.k, self.pos = _class_codes(
                split.labels, split.preds_a, split.preds_b)
            self.need_counts = bool(names - {"accuracy", "pearson", "spearman"})
        if names & set(RANK_METRICS):
            self.ly = split.labels.astype(np.float64)
            self.af = split.preds_a.astype(np.float64)
            self.bf = split.preds_b.astype(np.float64)
            self.nan_a, self.nan_b = np.isnan(self.af).any(), np.isnan(self.bf).any()
        if "spearman" in names:
            lcodes, self.lu = _row_codes(self.ly[None, :])
            self.lr_codes = lcodes[0]
            self.ar, self.au = _row_codes(self.af)
            self.br, self.bu = _row_codes(self.bf)

    def metric_sum(self, sidx: np.ndarray, ridx: np.ndarray) -> np.ndarray:
        """Sum over this split's metrics of ``metric(A) - metric(B)`` for every drawn seed
        ``sidx`` (c, S) with rows ``ridx`` (c, S, R): shape (c, S)."""
        c, s, r = ridx.shape
        shape = (c * s, r)
        seeds = sidx[:, :, None]

        def model(arr):
            return arr[seeds, ridx].reshape(shape)

        def label(arr):
            return arr[ridx].reshape(shape)

        names = self.split.metrics
        total = np.zeros(c * s)
        if set(names) & set(CLASS_METRICS):
            lc = label(self.lc)
            per_model = []
            for codes in (self.ac, self.bc):
                pc = model(codes)
                hits = (pc == lc).mean(axis=1)
                counts = _class_counts(pc, lc, self.k) if self.need_counts else None
                per_model.append((counts, hits))
            for name in names:
                if name in CLASS_METRICS:
                    total += _class_metric(name, *per_model[0], self.pos)
                    total -= _class_metric(name, *per_model[1], self.pos)
        if "pearson" in names:
            ly = label(self.ly)
            total += _pearson_rows(model(self.af), ly) - _pearson_rows(model(self.bf), ly)
        if "spearman" in names:
            lcodes = label(self.lr_codes)
            lranks = _ranks_from_codes(lcodes, self.lu)
            lconst = lcodes.min(axis=1) == lcodes.max(axis=1)
            for codes, u, vals, has_nan, sign in ((self.ar, self.au, self.af, self.nan_a, 1.0),
                                                  (self.br, self.bu, self.bf, self.nan_b, -1.0)):
                rho = _spearman_from_codes(model(codes), u, lranks, lconst)
                if has_nan:
                    rho = np.where(np.isnan(model(vals)).any(axis=1), NAN, rho)
                total += sign * rho
        return total.reshape(c, s)


class BootstrapCI(NamedTuple):
    """Result of :func:`two_level_bootstrap_ci`."""

    low: float
    """``alpha/2`` percentile of the finite replicates."""
    high: float
    """``1 - alpha/2`` percentile of the finite replicates."""
    boot_mean: float
    """Mean of the finite replicates."""
    estimate: float
    """The observed difference: mean over seeds of ``score(A) - score(B)`` on the full dev set."""
    n_dropped: int
    """Replicates left out because their difference was NaN (e.g. Pearson of a constant
    resample); the percentiles use the other ``B - n_dropped``."""


ROWS = ("per_seed", "shared")   # how two_level_bootstrap_ci draws the dev rows of a replicate


def bootstrap_replicates(splits: SplitRows | Sequence[SplitRows], B: int = 1000, seed: int = 0,
                         rows: str = "per_seed", resample_seeds: bool = True,
                         max_chunk_elements: int = 2_000_000) -> tuple[np.ndarray, float]:
    """The ``B`` replicates of the paired difference of a task score, ``A - B``, and the observed
    difference (mean over seeds of ``score(A) - score(B)`` on every row): the machinery of
    :func:`two_level_bootstrap_ci`, which documents the draws.

    ``rows``: ``"per_seed"`` draws each drawn seed's rows separately (the rows' noise shrinks with
    the number of seeds, as if every seed had been scored on its own rows); ``"shared"`` draws one
    row sample per replicate and split, used by every drawn seed (a crossed design: every seed was
    scored on the same dev rows, so the rows' noise does not shrink with seeds). Shared draws are
    ``integers(0, R, size=(B, R))`` per split. ``resample_seeds=False`` keeps the seeds as they are
    (the rows' noise alone). Replicates may be NaN (a metric undefined on a resample)."""
    if rows not in ROWS:
        raise ValueError(f"rows={rows!r}: one of {', '.join(ROWS)}")
    splits = [splits] if isinstance(splits, SplitRows) else list(splits)
    if not splits:
        raise ValueError("two_level_bootstrap_ci needs at least one split")
    n_seeds = {sp.preds_a.shape[0] for sp in splits}
    if len(n_seeds) != 1:
        raise ValueError(f"every split needs the same seeds, got counts {sorted(n_seeds)}")
    (s,) = n_seeds
    n_metrics = sum(len(sp.metrics) for sp in splits)
    prepared = [_Prepared(sp) for sp in splits]

    def task_diff(sidx, ridxs):
        total = sum(p.metric_sum(sidx, r) for p, r in zip(prepared, ridxs, strict=True))
        return (total / n_metrics).mean(axis=1)

    identity = np.arange(s)[None, :]
    estimate = float(task_diff(identity, [np.broadcast_to(np.arange(p.rows), (1, s, p.rows))
                                          for p in prepared])[0])

    seed_rng, *row_rngs = np.random.default_rng(seed).spawn(1 + len(splits))
    sidx = seed_rng.integers(0, s, size=(B, s)) if resample_seeds else np.broadcast_to(identity, (B, s))
    chunk = max(1, max_chunk_elements // (s * max(p.rows for p in prepared)))
    reps = np.empty(B)
    for start in range(0, B, chunk):
        stop = min(B, start + chunk)
        if rows == "per_seed":
            ridxs = [rng.integers(0, p.rows, size=(stop - start, s, p.rows))
                     for p, rng in zip(prepared, row_rngs, strict=True)]
        else:
            ridxs = [np.broadcast_to(rng.integers(0, p.rows, size=(stop - start, 1, p.rows)),
                                     (stop - start, s, p.rows))
                     for p, rng in zip(prepared, row_rngs, strict=True)]
        reps[start:stop] = task_diff(sidx[start:stop], ridxs)
    return reps, estimate


def two_level_bootstrap_ci(splits: SplitRows | Sequence[SplitRows], B: int = 1000, seed: int = 0,
                           alpha: float = 0.05, max_chunk_elements: int = 2_000_000,
                           rows: str = "per_seed") -> BootstrapCI:
    """Percentile bootstrap interval of the paired difference of a task score, ``A - B``,
    resampling at two levels: seeds, then dev rows (a hierarchical / two-stage bootstrap,
    Davison & Hinkley 1997, sec. 3.8).

    Each of the ``B`` replicates draws S seeds with replacement from the S shared seeds; for each
    drawn seed it draws the dev rows of every split with replacement, separately within each
    split (MNLI matched and mismatched keep their sizes), using the SAME row indices for A and B
    (the comparison is paired on rows too); computes the task score (mean of all metrics over
    all splits) of A and of B on those rows, and their difference; the replicate is the mean of
    the differences over the drawn seeds. Returned: a :class:`BootstrapCI` with the
    ``alpha/2``, ``1 - alpha/2`` percentiles, the replicate mean, the un-resampled estimate and
    the number of replicates dropped for being NaN (a metric undefined on a resample, e.g.
    Pearson of constant predictions; all NaN -> NaN interval). With one seed only the rows are
    resampled.

    ``rows="shared"``: one row sample per replicate, the same for every drawn seed (the report's
    choice: every seed was scored on the same dev rows; see :func:`bootstrap_replicates`).

    Random draws, for reproducibility: ``np.random.default_rng(seed).spawn(1 + len(splits))``
    gives one generator for the seeds, ``integers(0, S, size=(B, S))``, and one per split for its
    rows, ``integers(0, R, size=(B, S, R))`` (drawn in consecutive blocks of replicates; the
    stream is the same as one draw). Metrics are the vectorised ones of :func:`batch_metric`,
    computed for a block of ``max_chunk_elements // (S * R_max)`` replicates at a time.
    Unit-agnostic (the metrics are fractions in [0, 1] or correlations).
    """
    reps, estimate = bootstrap_replicates(splits, B, seed, rows=rows, max_chunk_elements=max_chunk_elements)
    finite = reps[np.isfinite(reps)]
    n_dropped = int(B - finite.size)
    if finite.size == 0:
        return BootstrapCI(NAN, NAN, NAN, estimate, n_dropped)
    low, high = _percentile_interval(finite, alpha)
    return BootstrapCI(low, high, float(finite.mean()), estimate, n_dropped)


def bootstrap_p(replicates) -> float:
    """Two-sided percentile-bootstrap p-value of "the difference is 0": the smallest ``alpha``
    whose ``1 - alpha`` percentile interval of the finite ``replicates`` excludes 0,
    ``min(1, 2 * min(P(rep <= 0), P(rep >= 0)))``. NaN without finite replicates."""
    x = _finite(replicates)
    if x.size == 0:
        return NAN
    return float(min(1.0, 2.0 * min(np.mean(x <= 0), np.mean(x >= 0))))


def percentile_interval(replicates, alpha: float) -> tuple[float, float]:
    """The ``alpha/2`` and ``1 - alpha/2`` percentiles of the finite ``replicates`` (NaN, NaN
    when there are none)."""
    x = _finite(replicates)
    return (NAN, NAN) if x.size == 0 else _percentile_interval(x, alpha)


# --------------------------------------------------------------------------- verdicts

VERDICTS = ("better", "worse", "equivalent", "undecided")


def holm_levels(pvalues) -> np.ndarray:
    """Holm's step-down levels as interval divisors: with the m non-NaN ``pvalues`` sorted
    ascending, the k-th (k = 1..m) gets ``m - k + 1`` (its interval is the ``1 - alpha / (m - k +
    1)`` one); NaN entries get m (Bonferroni). Ties keep their input order."""
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    idx = np.flatnonzero(~np.isnan(p))
    m = max(idx.size, 1)
    out = np.full(p.shape, float(m))
    order = idx[np.argsort(p[idx], kind="stable")]
    out[order] = m - np.arange(idx.size)
    return out


def verdicts(intervals: Sequence[tuple[float, float]], divisors: Sequence[float], rope: float) -> list[str]:
    """One verdict per comparison of a family, from its (Holm-adjusted) interval of the paired
    difference: ``better`` / ``worse`` when the interval excludes 0 (step-down: only while every
    comparison of a smaller divisor's step, i.e. a more significant one, was decided too),
    ``equivalent`` when it lies inside ``[-rope, +rope]``, ``undecided`` otherwise (and for an
    undefined interval). ``divisors`` are :func:`holm_levels` (the order of the step-down)."""
    order = sorted(range(len(intervals)), key=lambda i: -divisors[i])
    out = ["undecided"] * len(intervals)
    stepping = True
    for i in order:
        low, high = intervals[i]
        if not (math.isfinite(low) and math.isfinite(high)):
            stepping = False
            continue
        if stepping and (low > 0 or high < 0):
            out[i] = "better" if low > 0 else "worse"
            continue
        stepping = False
        if -rope <= low and high <= rope:
            out[i] = "equivalent"
    return out


# --------------------------------------------------------------------------- power with dev-row noise


def _z_sum(alpha: float, power: float) -> float:
    return float(stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power))


def detectable_with_rows(sd_seeds: float, sd_rows: float, n: float, alpha: float = 0.05,
                         power: float = 0.8) -> float:
    """The smallest mean difference ``n`` paired seeds detect with probability ``power`` (two-sided,
    level ``alpha``) when every seed is scored on the same evaluation rows. ``sd_seeds``: the
    standard deviation of the paired differences over seeds; ``sd_rows``: the standard error the
    evaluation rows add to the mean difference, which more seeds do not shrink. The mean difference
    then has variance ``sd_seeds**2 / n + sd_rows**2``: the paired t-test's :func:`min_detectable`
    with the per-pair spread ``sqrt(sd_seeds**2 + n * sd_rows**2)`` that gives it (so ``sd_rows = 0``
    is exactly :func:`min_detectable`). ``n = inf`` gives the floor, ``(z_{1-alpha/2} + z_power) *
    sd_rows``. NaN when either spread is not finite or n < 2."""
    if not (math.isfinite(sd_seeds) and math.isfinite(sd_rows)) or n < 2:
        return NAN
    if math.isinf(n):
        return _z_sum(alpha, power) * abs(sd_rows)
    return min_detectable(math.sqrt(sd_seeds**2 + n * sd_rows**2), int(n), alpha, power)


def seeds_needed_with_rows(sd_seeds: float, sd_rows: float, delta: float = 1.0, alpha: float = 0.05,
                           power: float = 0.8, max_n: int = 10_000) -> int | None:
    """The paired seeds :func:`detectable_with_rows` needs to reach ``delta``: the smallest n >= 2
    with ``detectable_with_rows(sd_seeds, sd_rows, n) <= |delta|`` (it falls with n towards the
    floor); None when no number of seeds up to ``max_n`` does (always when ``|delta|`` is at or below
    the floor) or an input is not finite."""
    delta = abs(delta)
    if not (math.isfinite(sd_seeds) and math.isfinite(sd_rows) and math.isfinite(delta)) or delta == 0:
        return None
    if delta <= detectable_with_rows(sd_seeds, sd_rows, math.inf, alpha, power):
        return None

    return smallest_n(lambda n: detectable_with_rows(sd_seeds, sd_rows, n, alpha, power) <= delta, max_n)
