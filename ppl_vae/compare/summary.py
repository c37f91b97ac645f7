r"""Summaries of a comparison grid: mean ± standard errors over seeds and datapoints, paired
per-datapoint differences of log p(x) against a baseline spec, and the importance verdict of
each spec.

Every standard error here is a standard error of the mean with its source named (the
convention of :data:`ppl_vae.evaluation.STDERR_SOURCES`). Over seeds s = 1..S of one spec, a
metric's summary is the mean m̄ with

* ``se_seeds`` = sd(m_s) / √S (sample standard deviation, ddof = 1; NaN for one seed): how
  much m̄ moves with the training seed, for these test images;
* ``se_within``, of the source ``within_source``: for ``log_px``, sd_i(l̄_i) / √N of the
  seed-averaged per-image values l̄_i (resampling the N test images, "datapoints"); for other
  metrics the cells' own errors: the root mean square of their datapoint errors (every seed
  sees the same images, so this term does not shrink with S) or √Σσ_s² / S of their Monte
  Carlo errors (independent draws per seed);
* ``se_combined`` = √(se_seeds² + se_within²): the error of m̄ when both the training seed and
  the test images are resampled (the two terms add in quadrature, being independent).

Paired differences compare two specs on the same test datapoints i = 1..N with the same
seed: d_si = log p̂_A(x_i) − log p̂_B(x_i). Pairing removes the datapoint-to-datapoint
spread that both models share (hard digits are hard for both), so the difference is far
better resolved than two separate means. Reported:

* per seed: D_s = mean_i d_si and its standard error sd_i(d_si) / √N;
* per spec: D̄ = mean_s D_s, with ``se_datapoints`` = sd_i(d̄_i) / √N of the seed-averaged
  differences d̄_i = mean_s d_si, ``se_seeds`` = sd_s(D_s) / √S, and ``se_combined``, their
  quadrature sum, the error to quote.

Verdicts (:mod:`ppl_vae.diagnostics.verdicts`, the run report's and ``diagnose``'s rule) of
each spec's mean k̂ fractions and importance ESS flag its :data:`IMPORTANCE_METRICS` rows
(``flag``, ``flag_reason``); a figure flagged "bad" is never marked best, and when the best
figure of a row is flagged "bad" no figure of that row is (a worse one is not promoted).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ppl_vae.diagnostics.verdicts import (
    IMPORTANCE_METRICS,
    Verdict,
    ess_verdict,
    khat_verdict,
    worst,
)

HIGHER_IS_BETTER = frozenset({"log_px", "elbo", "log_likelihood_is", "ais_log_likelihood",
                              "active_units", "sample_confidence", "sample_inception_score",
                              "sample_class_entropy"})
LOWER_IS_BETTER = frozenset({"bits_per_dim", "nll_nats", "reconstruction_mse", "khat_mean",
                             "khat_unreliable_fraction", "iwae_gap", "train_seconds",
                             "eval_seconds"})
SUMMARY_COLUMNS = ["spec", "metric", "mean", "se_seeds", "se_within", "within_source",
                   "se_combined", "num_seeds", "best", "flag", "flag_reason"]
PAIRED_COLUMNS = ["spec", "baseline", "mean_diff", "se_combined", "se_datapoints", "se_seeds",
                  "num_seeds", "num_datapoints", "fraction_better"]
PAIRED_SEED_COLUMNS = ["spec", "baseline", "seed", "mean_diff", "se", "num_datapoints"]


def _se(values: np.ndarray) -> float:
    if values.size < 2:
        return math.nan
    with np.errstate(invalid="ignore"):  # an infinite value (k̂ = -inf) has no spread
        return float(np.std(values, ddof=1) / math.sqrt(values.size))


def _quadrature(a: float, b: float) -> float:
    """√(a² + b²), taking a missing term (NaN) as absent; NaN when both are."""
    terms = [t for t in (a, b) if not math.isnan(t)]
    return math.hypot(*terms) if terms else math.nan


def _within(group: pd.DataFrame, points: pd.DataFrame | None) -> tuple[float, str]:
    """``se_within`` and its source for one spec's metric rows (see the module docstring)."""
    if group["metric"].iloc[0] == "log_px" and points is not None and not points.empty:
        per_image = points.groupby("datapoint")["log_px"].mean().to_numpy(dtype=np.float64)
        return _se(per_image), "datapoints"
    sources = {v for v in group["stderr_source"] if isinstance(v, str) and v}
    errors = group["stderr"].to_numpy(dtype=np.float64)
    if len(sources) != 1 or np.isnan(errors).any():
        return math.nan, ""
    (source,) = sources
    if source == "datapoints":
        return float(np.sqrt(np.mean(errors ** 2))), source
    return float(np.sqrt(np.sum(errors ** 2)) / errors.size), source


def importance_verdict(rows: pd.DataFrame) -> Verdict | None:
    """The worst of the k̂ and ESS verdicts of one spec's seed-averaged metrics (``None``
    without importance weights, e.g. an AIS-scored spec)."""
    mean = rows.groupby("metric")["value"].mean()
    verdicts = []
    if "khat_unreliable_fraction" in mean:
        verdicts.append(khat_verdict(mean["khat_unreliable_fraction"],
                                     mean.get("khat_ok_fraction", 0.0)))
    if "is_ess" in mean and mean.get("num_samples", 0) > 0:
        verdicts.append(ess_verdict(mean["is_ess"], mean["num_samples"]))
    return worst(verdicts)


def summarize(table: pd.DataFrame, per_datapoint: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per spec and metric of a tidy grid table (spec, seed, metric, value, stderr,
    stderr_source; ``per_datapoint``: the cells' per-datapoint log p(x), stacked with spec
    and seed): the mean over seeds, its standard errors (:data:`SUMMARY_COLUMNS`, the module
    docstring), the number of seeds, the importance flag, and ``best`` (the best spec's mean
    for metrics with a direction, :data:`HIGHER_IS_BETTER` / :data:`LOWER_IS_BETTER`; none
    when that figure is flagged "bad")."""
    flags = {spec: importance_verdict(rows) for spec, rows in table.groupby("spec", sort=False)}
    rows = []
    for (spec, metric), group in table.groupby(["spec", "metric"], sort=False):
        values = group["value"].to_numpy(dtype=np.float64)
        points = (None if per_datapoint is None
                  else per_datapoint[per_datapoint["spec"] == spec])
        se_seeds = _se(values)
        se_within, source = _within(group, points)
        verdict = flags[spec] if metric in IMPORTANCE_METRICS else None
        flagged = verdict is not None and verdict.level != "good"
        rows.append({"spec": spec, "metric": metric, "mean": float(values.mean()),
                     "se_seeds": se_seeds, "se_within": se_within, "within_source": source,
                     "se_combined": _quadrature(se_seeds, se_within),
                     "num_seeds": int(values.size), "best": False,
                     "flag": verdict.level if flagged else "",
                     "flag_reason": verdict.text if flagged else ""})
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    for metric, group in out.groupby("metric"):
        means = group["mean"]
        if not means.notna().any() or metric not in HIGHER_IS_BETTER | LOWER_IS_BETTER:
            continue
        best = means.idxmax() if metric in HIGHER_IS_BETTER else means.idxmin()
        # a best figure whose estimator is unreliable is not called best (nor is the runner-up)
        out.loc[best, "best"] = out.loc[best, "flag"] != "bad"
    return out


def paired_differences(per_datapoint: pd.DataFrame,
                       baseline: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paired log p(x) differences of every spec against ``baseline``.

    ``per_datapoint`` has columns spec, seed, datapoint, source_row, log_px (the cells'
    per-datapoint files stacked). Returns (summary per spec, table per spec and seed); only
    seeds the baseline also has are paired, and the datapoints must match.
    """
    if baseline not in set(per_datapoint["spec"]):
        raise ValueError(f"the baseline {baseline!r} has no finished cells; choose one of "
                         f"{sorted(set(per_datapoint['spec']))}")
    base = (per_datapoint.loc[per_datapoint["spec"] == baseline,
                              ["seed", "datapoint", "source_row", "log_px"]]
            .rename(columns={"source_row": "source_row_base", "log_px": "log_px_base"}))
    by_seed, summary = [], []
    for spec, rows in per_datapoint.groupby("spec", sort=False):
        if spec == baseline:
            continue
        joined = rows.merge(base, on=["seed", "datapoint"], how="inner")
        if not (joined["source_row"] == joined["source_row_base"]).all():
            raise ValueError(f"{spec} and {baseline} were evaluated on different datapoints; "
                             "pair only cells of one grid (same data and eval points)")
        if joined.empty:
            continue
        diff = joined.assign(d=joined["log_px"] - joined["log_px_base"])
        seeds = []
        for seed, d in diff.groupby("seed"):
            values = d["d"].to_numpy(dtype=np.float64)
            seeds.append(values.mean())
            by_seed.append({"spec": spec, "baseline": baseline, "seed": int(seed),
                            "mean_diff": float(values.mean()), "se": _se(values),
                            "num_datapoints": int(values.size)})
        per_point = diff.groupby("datapoint")["d"].mean().to_numpy(dtype=np.float64)
        se_datapoints, se_seeds = _se(per_point), _se(np.asarray(seeds))
        summary.append({"spec": spec, "baseline": baseline, "mean_diff": float(np.mean(seeds)),
                        "se_combined": _quadrature(se_datapoints, se_seeds),
                        "se_datapoints": se_datapoints, "se_seeds": se_seeds,
                        "num_seeds": len(seeds),
                        "num_datapoints": int(per_point.size),
                        "fraction_better": float((per_point > 0).mean())})
    return (pd.DataFrame(summary, columns=PAIRED_COLUMNS),
            pd.DataFrame(by_seed, columns=PAIRED_SEED_COLUMNS))
