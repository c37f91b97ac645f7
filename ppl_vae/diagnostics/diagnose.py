"""One diagnosis of a trained VAE's guide: PSIS k̂, MCMC reference, gaps, collapse.

:func:`diagnose` runs the recipe of :mod:`ppl_vae.diagnostics` on some datapoints and
returns a :class:`Diagnosis`, which renders itself as an ArviZ InferenceData
(:meth:`Diagnosis.inference_data`) and as one tidy table (:meth:`Diagnosis.table`:
``analysis, datapoint, latent_dim, metric, value, stderr``). Parts a model cannot have are
skipped with a note (no MCMC or gaps for discrete gates, no amortization gap without an
encoder).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ppl_vae.diagnostics import inference_data
from ppl_vae.diagnostics.collapse import posterior_collapse
from ppl_vae.diagnostics.gaps import GapResult, inference_gaps
from ppl_vae.diagnostics.mcmc import (
    MCMCReference,
    check_continuous_latents,
    compare_with_reference,
    mcmc_reference,
    reference_distances,
)
from ppl_vae.diagnostics.psis import (
    ImportanceWeights,
    PSISResult,
    importance_weights,
    khat_summary,
    psis,
)
from ppl_vae.diagnostics.verdicts import Verdict, khat_values_verdict
from ppl_vae.models.conditioning import require_unconditioned

__all__ = ["Diagnosis", "diagnose"]

TABLE_COLUMNS = ("analysis", "datapoint", "latent_dim", "metric", "value", "stderr")
MAX_PAIR_DIMS = 4
"""Latent dimensions a pair plot shows at most (:meth:`Diagnosis.pair_dims`)."""
RHAT_MAX, ESS_MIN = 1.01, 400
"""Convergence the MCMC reference should reach (Vehtari et al. 2021); else a note says so."""


@dataclass
class Diagnosis:
    """Everything :func:`diagnose` computed (``None`` for skipped parts, see ``notes``)."""

    datapoints: np.ndarray
    x: np.ndarray
    weights: ImportanceWeights
    psis: PSISResult
    reference_rows: np.ndarray
    reference: MCMCReference | None = None
    comparison: pd.DataFrame | None = None
    distances: pd.DataFrame | None = None
    gaps: GapResult | None = None
    collapse: pd.DataFrame | None = None
    history: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def guide_code(self) -> dict[str, np.ndarray]:
        """Guide draws per site, plus the code ``z`` for masked models, ``(S, B, d)``."""
        draws = dict(self.weights.draws)
        if "z" not in draws:
            draws["z"] = draws["gate"] * draws["slab"]
        return draws

    @property
    def khat_summary(self) -> pd.DataFrame:
        return khat_summary(self.psis.khat, self.psis.num_samples)

    @property
    def khat_verdict(self) -> Verdict:
        """The k̂ verdict the run report and ``compare`` give the same weights."""
        return khat_values_verdict(self.psis.khat)

    def pair_dims(self, datapoint: Any, max_dims: int = MAX_PAIR_DIMS) -> np.ndarray:
        """The latent dimensions to show for ``datapoint`` beside its MCMC reference: all, or
        the ``max_dims`` with the largest ``|mean_shift_sd|`` (guide vs MCMC)."""
        dims = np.arange(self.guide_code["z"].shape[-1])
        if dims.size <= max_dims:
            return dims
        if self.comparison is None:
            return dims[:max_dims]
        rows = self.comparison[self.comparison[inference_data.DATAPOINT] == datapoint]
        return np.sort(rows.assign(s=rows["mean_shift_sd"].abs())
                       .nlargest(max_dims, "s")[inference_data.LATENT].to_numpy())

    def guide_reference_inference_data(self, max_draws: int = 1000) -> Any:
        """The guide's draws of z at the MCMC reference's datapoints (at most ``max_draws``),
        as one chain of an InferenceData shaped like the reference's."""
        guide = self.guide_code["z"][:max_draws, self.reference_rows]
        return inference_data.mcmc_inference_data({"z": guide[None]},
                                                  datapoints=self.reference.datapoints)

    def inference_data(self) -> Any:
        """Guide draws, log weights, data, MCMC reference and ELBO history as InferenceData."""
        guide = inference_data.guide_inference_data(
            self.guide_code, datapoints=self.datapoints, log_terms=self.weights.terms(),
            observed=self.x)
        return inference_data.combine(
            guide, reference=None if self.reference is None else self.reference.inference_data,
            history=self.history)

    def table(self) -> pd.DataFrame:
        """All results as one tidy table (columns :data:`TABLE_COLUMNS`)."""
        frames = [_long("psis", pd.DataFrame({"datapoint": self.datapoints,
                                              "khat": self.psis.khat}), ["khat"])]
        if self.reference is not None:
            summary = self.reference.summary[self.reference.summary["site"] == "z"]
            frames.append(_long("mcmc", summary, ["mean", "sd", "ess_bulk", "ess_tail",
                                                  "r_hat"],
                                stderr={"mean": "mcse_mean", "sd": "mcse_sd"}))
            frames.append(_long("guide_vs_mcmc", self.comparison,
                                ["guide_mean", "guide_sd", "mean_shift_sd", "sd_ratio"]))
            frames.append(_long("guide_vs_mcmc", self.distances,
                                ["energy_distance", "energy_distance_null"]))
        if self.gaps is not None:
            metrics = ["log_px", "elbo_amortized", "elbo_optimized", "gap_amortization",
                       "gap_approximation"]
            frames.append(_long("gaps", self.gaps.table, metrics,
                                stderr={m: f"{m}_se" for m in metrics}))
        if self.collapse is not None:
            collapse = self.collapse.assign(active=self.collapse["active"].astype(float),
                                            collapsed=self.collapse["collapsed"].astype(float))
            frames.append(_long("collapse", collapse, ["kl", "activity", "active", "collapsed"],
                                stderr={"kl": "kl_se"}))
        return pd.concat(frames, ignore_index=True)[list(TABLE_COLUMNS)]


def _long(analysis: str, df: pd.DataFrame, metrics: Sequence[str],
          stderr: dict[str, str] | None = None) -> pd.DataFrame:
    stderr = stderr or {}
    rows = []
    for metric in metrics:
        rows.append(pd.DataFrame({
            "analysis": analysis,
            "datapoint": df["datapoint"] if "datapoint" in df else np.nan,
            "latent_dim": df["latent_dim"] if "latent_dim" in df else np.nan,
            "metric": metric, "value": df[metric].astype(float),
            "stderr": df[stderr[metric]] if metric in stderr else np.nan}))
    return pd.concat(rows, ignore_index=True)


def diagnose(vae: Any, x: Any, *, datapoints: Any = None, idx: Any = None,
             reference_rows: Sequence[int] = (0, 1, 2, 3), gap_rows: Sequence[int] | None = None,
             num_samples: int = 1000, num_chains: int = 4, num_warmup: int = 500,
             num_draws: int = 1000, gap_steps: int = 1000, gap_eval_samples: int = 2000,
             likelihood_samples: int = 2000, history: pd.DataFrame | None = None,
             seed: int = 0, progress: bool = False) -> Diagnosis:
    """Diagnose the guide of ``vae`` on the rows of ``x``.

    Parameters
    ----------
    x : ``(N, D)`` data; PSIS k̂ and posterior collapse use all rows.
    datapoints : ``(N,)`` labels (e.g. row numbers in the split; default ``0..N-1``).
    idx : training-set indices of ``x`` (encoder-free models only).
    reference_rows : rows of ``x`` (positions) given an MCMC reference (a handful).
    gap_rows : rows for the inference gaps (default: ``reference_rows``).
    num_samples : guide draws per datapoint for the importance weights.
    num_chains, num_warmup, num_draws : NUTS settings (per chain).
    gap_steps, gap_eval_samples, likelihood_samples : see
        :func:`ppl_vae.diagnostics.gaps.inference_gaps`.
    history : the run's training history (stored in the InferenceData).
    progress : show a bar over the stages (importance weights, MCMC reference, inference
        gaps, posterior collapse) and the progress bars of the sampler and of NUTS, when
        stderr is a terminal.
    """
    spec = vae.spec
    require_unconditioned(spec, "diagnose (PSIS, MCMC references, inference gaps)")
    if not spec.posterior.has_density:
        raise ValueError("point codes (codes = 'point') are a Dirac posterior: there is no "
                         "density q(z | x) to diagnose; use codes = 'gaussian'")
    x = np.asarray(x)
    datapoints = inference_data.check_datapoints(datapoints, x.shape[0])
    reference_rows = _rows("reference_rows", reference_rows, x.shape[0])
    gap_rows = reference_rows if gap_rows is None else _rows("gap_rows", gap_rows, x.shape[0])
    stages = tqdm(total=4, unit="stage", disable=None if progress else True, desc="diagnose",
                  bar_format="{desc}: {n_fmt}/{total_fmt} stages done, now {postfix} "
                             "[{elapsed}]")
    stages.set_postfix_str("importance weights and PSIS k-hat")
    weights = importance_weights(vae, x, num_samples, idx=idx, seed=seed, progress=progress)
    result = Diagnosis(datapoints=datapoints, x=x, weights=weights,
                       psis=psis(weights.log_weight, resolution=weights.resolution),
                       reference_rows=reference_rows, history=history)
    try:
        check_continuous_latents(spec)
        continuous = True
    except ValueError as err:
        continuous = False
        result.notes.append(f"MCMC reference and inference gaps skipped: {err}")
    stages.update()
    stages.set_postfix_str(f"MCMC reference of {reference_rows.size} datapoints")
    if continuous and reference_rows.size:
        result.reference = mcmc_reference(
            vae, x[reference_rows], datapoints=datapoints[reference_rows],
            num_chains=num_chains, num_warmup=num_warmup, num_draws=num_draws, seed=seed,
            progress=progress and sys.stderr.isatty())
        ref = result.reference
        if ref.max_rhat > RHAT_MAX or ref.min_ess_bulk < ESS_MIN or ref.num_divergent:
            result.notes.append(
                f"the MCMC reference is not trustworthy (max R-hat {ref.max_rhat:.3f}, min "
                f"bulk ESS {ref.min_ess_bulk:.0f}, {ref.num_divergent} divergent; wanted "
                f"R-hat < {RHAT_MAX}, ESS >= {ESS_MIN}, none divergent): run more warmup "
                "and draws")
        guide = result.guide_code["z"][:, reference_rows]
        result.comparison = compare_with_reference(guide, result.reference)
        result.distances = reference_distances(guide, result.reference, seed=seed)
    stages.update()
    stages.set_postfix_str(f"inference gaps of {gap_rows.size} datapoints ({gap_steps} steps)")
    if continuous and gap_rows.size and spec.posterior.amortized:
        result.gaps = inference_gaps(vae, x[gap_rows], datapoints=datapoints[gap_rows],
                                     num_steps=gap_steps, num_eval_samples=gap_eval_samples,
                                     num_likelihood_samples=likelihood_samples, seed=seed)
    elif not spec.posterior.amortized:
        result.notes.append("inference gaps skipped: the model has no encoder, so there is "
                            "no amortization gap")
    stages.update()
    stages.set_postfix_str("posterior collapse")
    if x.shape[0] >= 2:
        result.collapse = posterior_collapse(vae, x, idx=idx, seed=seed)
    else:
        result.notes.append("posterior collapse skipped: active units need >= 2 datapoints")
    stages.update()
    stages.close()
    return result


def _rows(name: str, rows: Sequence[int], n: int) -> np.ndarray:
    rows = np.asarray(rows, dtype=int).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"{name} must be row positions in 0..{n - 1}, got {rows.tolist()}")
    if np.unique(rows).size != rows.size:
        raise ValueError(f"{name} must not repeat rows, got {rows.tolist()}")
    return rows
