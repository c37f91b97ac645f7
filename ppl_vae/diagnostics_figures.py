"""Figures and the report of a :class:`ppl_vae.diagnosis.Diagnosis` (matplotlib, Agg).

Figures render what the diagnosis computed; nothing is recomputed here. Trace, rank and
pair plots are ArviZ's (``az.plot_trace``, ``az.plot_rank``, ``az.plot_pair``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from ppl_vae import arviz_convert
from ppl_vae.psis import KHAT_GOOD, KHAT_OK, khat_threshold

__all__ = ["build_report", "collapse_bars", "gap_bars", "history_plot", "khat_histogram",
           "pair_plot", "rank_plot", "shown_dims", "trace_plot"]

MAX_PAIR_DIMS = 4
"""Pair plots show at most this many latent dimensions (the largest guide-vs-MCMC shifts)."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def _arviz_plotting() -> Iterator[Any]:
    """ArviZ 0.23's matplotlib backend with matplotlib >= 3.11: yields ``arviz``.

    ArviZ 0.23 passes a dict as ``alias_mapping`` to ``normalize_kwargs``, which matplotlib
    3.11 deprecates; the warning concerns ArviZ's code, not ours, so it is silenced here
    (and only here).
    """
    _pyplot()
    import arviz as az

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping")
        yield az


def khat_histogram(khat: Any, num_samples: int) -> Any:
    """Histogram of k̂ with the 0.5 / 0.7 thresholds and the S-dependent one."""
    plt = _pyplot()
    khat = np.asarray(khat, dtype=np.float64)
    finite = khat[np.isfinite(khat)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(finite, bins=30, color="0.5")
    threshold = khat_threshold(num_samples)
    for value, style, label in ((KHAT_GOOD, ":", "0.5 good"), (KHAT_OK, "--", "0.7 unreliable"),
                                (threshold, "-", f"min(1-1/log10 S, 0.7) = {threshold:.2f}")):
        ax.axvline(value, color="C3", linestyle=style, label=label)
    constant = int((khat == -np.inf).sum())
    ax.set_xlabel("Pareto k̂ of log p(x,z) − log q(z|x)")
    ax.set_ylabel("datapoints")
    ax.set_title(f"PSIS k̂, S = {num_samples} draws per datapoint"
                 + (f" ({constant} with constant weights, k̂ = −inf)" if constant else ""))
    ax.legend(fontsize="small")
    return fig


def trace_plot(reference_idata: Any, datapoint: Any, dims: Any) -> Any:
    """ArviZ trace plot of the MCMC reference of z for one datapoint and some dimensions."""
    with _arviz_plotting() as az:
        axes = az.plot_trace(reference_idata, var_names=["z"], compact=False,
                             figsize=(10, 2.2 * len(dims)),
                             coords={arviz_convert.DATAPOINT: [datapoint],
                                     arviz_convert.LATENT: list(dims)})
    return np.asarray(axes).ravel()[0].figure


def rank_plot(reference_idata: Any, datapoint: Any) -> Any:
    """ArviZ rank plot (per-chain rank histograms) of z for one datapoint."""
    with _arviz_plotting() as az:
        axes = az.plot_rank(reference_idata, var_names=["z"],
                            coords={arviz_convert.DATAPOINT: [datapoint]})
    return np.asarray(axes).ravel()[0].figure


def shown_dims(latent_dim: int, datapoint: Any, comparison: pd.DataFrame | None) -> np.ndarray:
    """At most :data:`MAX_PAIR_DIMS` dimensions: those with the largest ``|mean_shift_sd|``."""
    dims = np.arange(latent_dim)
    if dims.size <= MAX_PAIR_DIMS:
        return dims
    if comparison is None:
        return dims[:MAX_PAIR_DIMS]
    rows = comparison[comparison[arviz_convert.DATAPOINT] == datapoint]
    return np.sort(rows.assign(s=rows["mean_shift_sd"].abs())
                   .nlargest(MAX_PAIR_DIMS, "s")[arviz_convert.LATENT].to_numpy())


def pair_plot(guide_draws: Any, reference: Any, datapoint: Any,
              comparison: pd.DataFrame | None = None, max_draws: int = 1000) -> Any:
    """Guide draws over MCMC draws of z for one datapoint (ArviZ pair plot).

    With more than :data:`MAX_PAIR_DIMS` dimensions, those with the largest
    ``|mean_shift_sd|`` in ``comparison`` are shown.
    """
    plt = _pyplot()
    post = reference.inference_data.posterior
    dims = shown_dims(post.sizes[arviz_convert.LATENT], datapoint, comparison)
    position = int(np.flatnonzero(reference.datapoints == datapoint)[0])
    guide = np.asarray(guide_draws)[:max_draws, position]
    guide_idata = arviz_convert.mcmc_inference_data({"z": guide[None, :, None, :]},
                                                    datapoints=[datapoint])
    coords = {arviz_convert.DATAPOINT: [datapoint], arviz_convert.LATENT: list(dims)}
    ref_chains = post["z"].sel({arviz_convert.DATAPOINT: [datapoint]})
    thin = max(1, ref_chains.sizes["chain"] * ref_chains.sizes["draw"] // max_draws)
    with _arviz_plotting() as az:
        ref_idata = az.InferenceData(posterior=post.isel(draw=slice(None, None, thin)))
        style = {"alpha": 0.5, "s": 20, "edgecolors": "none"}
        ax = az.plot_pair(ref_idata, var_names=["z"], coords=coords, kind="scatter",
                          scatter_kwargs={"color": "C0", **style})
        ax = az.plot_pair(guide_idata, var_names=["z"], coords=coords, kind="scatter", ax=ax,
                          scatter_kwargs={"color": "C1", **style})
    fig = np.asarray(ax).ravel()[0].figure
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=c, label=label)
               for c, label in (("C0", "MCMC p(z|x)"), ("C1", "guide q(z|x)"))]
    fig.legend(handles=handles, loc="upper right")
    fig.suptitle(f"datapoint {datapoint}: guide vs MCMC")
    return fig


def gap_bars(gaps: pd.DataFrame) -> Any:
    """Stacked bars per datapoint: approximation gap + amortization gap = log p(x) − ELBO."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(gaps) + 2), 3.5))
    pos = np.arange(len(gaps))
    approx, amort = gaps["gap_approximation"].to_numpy(), gaps["gap_amortization"].to_numpy()
    ax.bar(pos, approx, color="C0", label="approximation gap",
           yerr=2 * gaps["gap_approximation_se"], capsize=3)
    ax.bar(pos, amort, bottom=approx, color="C1", label="amortization gap",
           yerr=2 * gaps["gap_amortization_se"], capsize=3)
    ax.set_xticks(pos, [str(d) for d in gaps["datapoint"]])
    ax.set_xlabel("datapoint")
    ax.set_ylabel("nats")
    ax.set_title("log p(x) − ELBO = approximation + amortization gap (±2 se)")
    ax.legend(fontsize="small")
    return fig


def collapse_bars(collapse: pd.DataFrame) -> Any:
    """KL per latent dimension (bars) coloured by active / inactive unit."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.3 * len(collapse) + 2), 3.5))
    colors = np.where(collapse["active"], "C0", "0.7")
    values = collapse["kl"] if collapse["kl"].notna().any() else collapse["activity"]
    ax.bar(collapse["latent_dim"], values, color=colors)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL(q ‖ p) per dim, nats" if collapse["kl"].notna().any()
                  else "Var_x E_q[z]")
    ax.set_title(f"{int(collapse['active'].sum())} active units (blue), "
                 f"{int(collapse['collapsed'].sum())} collapsed")
    return fig


def history_plot(history: pd.DataFrame) -> Any:
    """Training loss (−ELBO per datapoint) against step, per split."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    groups = history.groupby("split") if "split" in history else [("", history)]
    for name, part in groups:
        ax.plot(part["step"], part["loss"], label=name or None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (−objective per datapoint, nats)")
    if "split" in history:
        ax.legend(fontsize="small")
    return fig


def build_report(diagnosis: Any, title: str) -> Any:
    """A :class:`ppl_vae.report.Report` with the tables and figures of a diagnosis."""
    from ppl_vae.report import Report

    d = diagnosis
    report = Report(title)
    report.heading("PSIS k̂ of the importance weights")
    report.text("Per datapoint, S draws z ~ q(z|x) weighted by log p(x,z) − log q(z|x); "
                "Pareto k̂ < 0.5 good, 0.5–0.7 ok, > 0.7 unreliable (Yao et al. 2018); with "
                "S draws the reliable range ends at min(1 − 1/log10 S, 0.7) (Vehtari et al. "
                "2024).")
    report.table(d.khat_summary, caption="datapoints per k̂ band")
    report.figure(khat_histogram(d.psis.khat, d.psis.num_samples), "khat")
    if d.reference is not None:
        ref = d.reference
        report.heading("MCMC reference posteriors")
        report.text(f"NUTS on p(z|x) with decoder and prior fixed: "
                    f"{ref.samples['z'].shape[0]} chains × {ref.samples['z'].shape[1]} draws; "
                    f"max R-hat {ref.max_rhat:.4f}, min bulk ESS {ref.min_ess_bulk:.0f}, "
                    f"{ref.num_divergent} divergent transitions.")
        report.table(ref.summary, caption="ArviZ convergence summary")
        report.table(d.comparison, caption="guide vs MCMC per dimension of z")
        report.table(d.distances, caption="energy distance guide vs MCMC (null: MCMC half "
                                          "vs half)")
        first = ref.datapoints[0]
        dims = shown_dims(ref.samples["z"].shape[-1], first, d.comparison)
        report.figure(trace_plot(ref.inference_data, first, dims), "trace",
                      caption=f"datapoint {first}")
        report.figure(rank_plot(ref.inference_data, first), "rank",
                      caption=f"datapoint {first}")
        guide = d.guide_code["z"][:, d.reference_rows]
        for label in ref.datapoints:
            report.figure(pair_plot(guide, ref, label, d.comparison), f"pair-{label}")
    if d.gaps is not None:
        report.heading("Inference gaps")
        report.table(d.gaps.table, caption="per datapoint, nats")
        report.figure(gap_bars(d.gaps.table), "gaps")
    if d.collapse is not None:
        report.heading("Posterior collapse")
        report.table(d.collapse, caption="KL per dimension and active units")
        report.figure(collapse_bars(d.collapse), "collapse")
    if d.history is not None and {"step", "loss"} <= set(d.history.columns):
        report.heading("Training history")
        report.figure(history_plot(d.history), "history")
    if d.notes:
        report.heading("Notes")
        for note in d.notes:
            report.text(note)
    return report
