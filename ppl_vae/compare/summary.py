r"""Summaries of a comparison grid: mean ± standard error over seeds, and paired
per-datapoint differences of log p(x) against a baseline spec.

Over seeds s = 1..S of one spec, a metric's summary is the mean m̄ and the standard error
sd(m_s) / √S (sample standard deviation, ddof = 1; NaN for one seed).

Paired differences compare two specs on the same test datapoints i = 1..N with the same
seed: d_si = log p̂_A(x_i) − log p̂_B(x_i). Pairing removes the datapoint-to-datapoint
spread that both models share (hard digits are hard for both), so the difference is far
better resolved than two separate means. Reported:

* per seed: D_s = mean_i d_si and its standard error sd_i(d_si) / √N;
* per spec: D̄ = mean_s D_s, with ``se_datapoints`` = sd_i(d̄_i) / √N of the seed-averaged
  differences d̄_i = mean_s d_si (how well the test set pins D̄ down for these trained
  models) and ``se_seeds`` = sd_s(D_s) / √S (how much D̄ moves with the training seed).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

HIGHER_IS_BETTER = frozenset({"log_px", "elbo", "log_likelihood_is", "ais_log_likelihood",
                              "active_units", "sample_confidence", "sample_inception_score",
                              "sample_class_entropy"})
LOWER_IS_BETTER = frozenset({"bits_per_dim", "nll_nats", "reconstruction_mse", "khat_mean",
                             "khat_unreliable_fraction", "iwae_gap", "train_seconds",
                             "eval_seconds"})
SUMMARY_COLUMNS = ["spec", "metric", "mean", "se", "num_seeds", "best"]
PAIRED_COLUMNS = ["spec", "baseline", "mean_diff", "se_datapoints", "se_seeds", "num_seeds",
                  "num_datapoints", "fraction_better"]
PAIRED_SEED_COLUMNS = ["spec", "baseline", "seed", "mean_diff", "se", "num_datapoints"]


def _se(values: np.ndarray) -> float:
    if values.size < 2:
        return math.nan
    with np.errstate(invalid="ignore"):  # an infinite value (k̂ = -inf) has no spread
        return float(np.std(values, ddof=1) / math.sqrt(values.size))


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per spec and metric of a tidy grid table (spec, seed, metric, value): the mean over
    seeds, its standard error, the number of seeds, and ``best`` (the best spec's mean
    for metrics with a direction, :data:`HIGHER_IS_BETTER` / :data:`LOWER_IS_BETTER`)."""
    rows = []
    for (spec, metric), group in table.groupby(["spec", "metric"], sort=False):
        values = group["value"].to_numpy(dtype=np.float64)
        rows.append({"spec": spec, "metric": metric, "mean": float(values.mean()),
                     "se": _se(values), "num_seeds": int(values.size), "best": False})
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    for metric, group in out.groupby("metric"):
        means = group["mean"]
        if metric in HIGHER_IS_BETTER and means.notna().any():
            out.loc[means.idxmax(), "best"] = True
        elif metric in LOWER_IS_BETTER and means.notna().any():
            out.loc[means.idxmin(), "best"] = True
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
        summary.append({"spec": spec, "baseline": baseline,
                        "mean_diff": float(np.mean(seeds)), "se_datapoints": _se(per_point),
                        "se_seeds": _se(np.asarray(seeds)), "num_seeds": len(seeds),
                        "num_datapoints": int(per_point.size),
                        "fraction_better": float((per_point > 0).mean())})
    return (pd.DataFrame(summary, columns=PAIRED_COLUMNS),
            pd.DataFrame(by_seed, columns=PAIRED_SEED_COLUMNS))
