r"""Reference posteriors by MCMC: NUTS on p(z | x) with the trained decoder and prior fixed.

For a handful of datapoints the unnormalized posterior

.. math:: p(z | x) \propto p(x | z)\, p(z)

is sampled with NumPyro's NUTS (Hoffman & Gelman 2014) from several overdispersed starts;
R-hat, bulk/tail ESS and MCSE come from ArviZ (Vehtari et al. 2021). Since the datapoints'
posteriors are independent given the parameters, all chosen datapoints are sampled jointly
as one vector of B × d latents: one compilation, one adaptation of a diagonal mass matrix.

The guide is then compared with the reference per latent dimension (means and standard
deviations, against the MCMC's own standard errors) and per datapoint by the energy
distance of the two samples (Székely & Rizzo 2013).

A Pyro VAE is sampled through a NumPyro copy with the same parameters
(:func:`ppl_vae.models.as_numpyro`): both backends define the same densities (pinned by the
parity tests).

References
----------
Hoffman, M. D. & Gelman, A. (2014). The No-U-Turn sampler. JMLR 15.
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
Rank-normalization, folding, and localization: an improved R-hat. Bayesian Analysis 16(2).
Székely, G. J. & Rizzo, M. L. (2013). Energy statistics: A class of statistics based on
distances. J. Statistical Planning and Inference 143(8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ppl_vae.diagnostics import inference_data
from ppl_vae.models import as_numpyro

__all__ = ["MCMCReference", "check_continuous_latents", "compare_with_reference",
           "energy_distance", "mcmc_reference", "reference_distances"]


def check_continuous_latents(spec: Any) -> None:
    """Raise unless every latent site of the model is continuous (NUTS needs gradients)."""
    if not spec.posterior.continuous:
        raise ValueError(
            f"model {spec.name!r} has discrete Bernoulli gates, which NUTS cannot sample and "
            "which are not marginalized here (2^latent_dim terms); MCMC references and "
            "inference gaps need continuous latents: use relaxed gates "
            "(posterior gate = 'relaxed', e.g. the masked_relaxed_laplace model)")


@dataclass(frozen=True)
class MCMCReference:
    """NUTS draws of p(z | x) for some datapoints, with ArviZ's convergence diagnostics.

    Attributes
    ----------
    samples : site -> ``(chains, draws, B, latent_dim)``; ``"z"`` is always the code fed
        to the decoder.
    sample_stats : ``diverging``, ``energy``, ``n_steps``, each ``(chains, draws)``.
    inference_data : the same as an ArviZ InferenceData (``posterior``, ``sample_stats``).
    summary : tidy table, one row per (site, datapoint, latent_dim): mean, sd, mcse_mean,
        mcse_sd, ess_bulk, ess_tail, r_hat.
    datapoints : ``(B,)`` labels of the datapoints.
    """

    samples: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray]
    inference_data: Any
    summary: pd.DataFrame
    datapoints: np.ndarray

    @property
    def num_divergent(self) -> int:
        return int(self.sample_stats["diverging"].sum())

    @property
    def max_rhat(self) -> float:
        return float(self.summary["r_hat"].max())

    @property
    def min_ess_bulk(self) -> float:
        return float(self.summary["ess_bulk"].min())


def mcmc_reference(vae: Any, x: Any, *, datapoints: Any = None, num_chains: int = 4,
                   num_warmup: int = 500, num_draws: int = 1000, seed: int = 0,
                   target_accept_prob: float = 0.9, init_radius: float = 2.0,
                   progress: bool = False) -> MCMCReference:
    """Sample p(z | x) for each row of ``x`` with NUTS, decoder and prior fixed.

    Parameters
    ----------
    vae : a VAE of either backend with continuous latent sites.
    x : ``(B, D)`` data (a handful of datapoints).
    datapoints : ``(B,)`` labels for the InferenceData coordinates (default ``0..B-1``).
    num_chains : chains, run vectorized (several are needed for R-hat).
    num_warmup, num_draws : per chain.
    init_radius : chains start at independent uniform draws in (−r, r) in unconstrained
        space, overdispersed relative to a N(0, 1)-scale posterior, so R-hat can see
        chains that have not mixed.
    progress : show NumPyro's progress bar (warmup and sampling, with the time left).
    """
    import jax
    from numpyro import handlers
    from numpyro.infer import MCMC, NUTS, init_to_uniform

    check_continuous_latents(vae.spec)
    if num_chains < 2:
        raise ValueError(f"num_chains must be >= 2 to compute R-hat, got {num_chains}")
    nvae = as_numpyro(vae)
    x = nvae.as_tensor(np.asarray(x))
    if x.ndim != 2 or x.shape[1] != vae.spec.data_dim:
        raise ValueError(f"x must have shape (B, {vae.spec.data_dim}), got {tuple(x.shape)}")
    datapoints = inference_data.check_datapoints(datapoints, x.shape[0])

    def target(x: Any, params: dict[str, Any]) -> None:
        # Parameters enter as arguments (not constants baked into the compiled potential).
        with handlers.substitute(data=params):
            nvae.model(x)

    kernel = NUTS(target, target_accept_prob=target_accept_prob,
                  init_strategy=init_to_uniform(radius=init_radius))
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_draws, num_chains=num_chains,
                chain_method="vectorized", progress_bar=progress)
    mcmc.run(jax.random.PRNGKey(seed), x, nvae.params,
             extra_fields=("diverging", "energy", "num_steps"))
    sites = (*vae.sites, "z") if "z" not in vae.sites else vae.sites
    grouped = mcmc.get_samples(group_by_chain=True)
    samples = {s: np.asarray(grouped[s], dtype=np.float64) for s in sites}
    extra = mcmc.get_extra_fields(group_by_chain=True)
    stats = {"diverging": np.asarray(extra["diverging"]),
             "energy": np.asarray(extra["energy"], dtype=np.float64),
             "n_steps": np.asarray(extra["num_steps"])}
    idata = inference_data.mcmc_inference_data(samples, datapoints=datapoints, sample_stats=stats)
    return MCMCReference(samples=samples, sample_stats=stats, inference_data=idata,
                         summary=convergence_summary(idata), datapoints=datapoints)


def convergence_summary(idata: Any) -> pd.DataFrame:
    """Tidy ArviZ summary of the ``posterior`` group: one row per (site, datapoint, dim)."""
    import arviz as az

    post = idata.posterior
    stats = {"mean": post.mean(("chain", "draw")), "sd": post.std(("chain", "draw"), ddof=1),
             "mcse_mean": az.mcse(idata, method="mean"), "mcse_sd": az.mcse(idata, method="sd"),
             "ess_bulk": az.ess(idata, method="bulk"), "ess_tail": az.ess(idata, method="tail"),
             "r_hat": az.rhat(idata)}
    frames = []
    for site in post.data_vars:
        frame = pd.DataFrame({name: ds[site].to_series() for name, ds in stats.items()})
        frames.append(frame.reset_index().assign(site=site))
    return pd.concat(frames, ignore_index=True)[["site", inference_data.DATAPOINT,
                                                 inference_data.LATENT, *stats]]


def compare_with_reference(guide_draws: Any, reference: MCMCReference) -> pd.DataFrame:
    """Guide vs MCMC, one row per (datapoint, latent_dim) of the code z.

    Columns: the guide's and the reference's mean and sd, the reference's MCSEs, the mean
    difference in reference standard deviations (``mean_shift_sd``) and the sd ratio
    guide/reference (< 1: the guide is too narrow).

    Parameters
    ----------
    guide_draws : ``(K, B, latent_dim)`` draws of the code z from the guide for the same
        datapoints as ``reference``.
    """
    guide = np.asarray(guide_draws, dtype=np.float64)
    _check_same_shape(guide, reference)
    keys = [inference_data.DATAPOINT, inference_data.LATENT]
    labels, dims = np.meshgrid(reference.datapoints, np.arange(guide.shape[2]), indexing="ij")
    table = pd.DataFrame({keys[0]: labels.ravel(), keys[1]: dims.ravel(),
                          "guide_mean": guide.mean(axis=0).ravel(),
                          "guide_sd": guide.std(axis=0, ddof=1).ravel()})
    summary = reference.summary[reference.summary["site"] == "z"]
    table = table.merge(summary[[*keys, "mean", "sd", "mcse_mean", "mcse_sd"]], on=keys,
                        how="left", validate="one_to_one").rename(columns={
        "mean": "reference_mean", "sd": "reference_sd", "mcse_mean": "reference_mcse_mean",
        "mcse_sd": "reference_mcse_sd"})
    table["mean_shift_sd"] = (table["guide_mean"] - table["reference_mean"]) / table["reference_sd"]
    table["sd_ratio"] = table["guide_sd"] / table["reference_sd"]
    return table


def reference_distances(guide_draws: Any, reference: MCMCReference, *, max_draws: int = 1000,
                        seed: int = 0) -> pd.DataFrame:
    """Energy distance between guide and MCMC draws of z, per datapoint.

    ``energy_distance_null`` is the same statistic between the first and second half of
    the MCMC chains (both target p(z | x)): the size of a distance that is only noise.
    """
    guide = np.asarray(guide_draws, dtype=np.float64)
    _check_same_shape(guide, reference)
    mcmc = reference.samples["z"]
    half = mcmc.shape[0] // 2
    rng = np.random.default_rng(seed)
    rows = []
    for b, label in enumerate(reference.datapoints):
        pooled = mcmc[:, :, b].reshape(-1, mcmc.shape[-1])
        rows.append({inference_data.DATAPOINT: label,
                     "energy_distance": energy_distance(guide[:, b], pooled,
                                                        max_draws=max_draws, rng=rng),
                     "energy_distance_null": energy_distance(
                         mcmc[:half, :, b].reshape(-1, mcmc.shape[-1]),
                         mcmc[half:, :, b].reshape(-1, mcmc.shape[-1]),
                         max_draws=max_draws, rng=rng)})
    return pd.DataFrame(rows)


def energy_distance(a: Any, b: Any, *, max_draws: int | None = None,
                    rng: np.random.Generator | None = None) -> float:
    r"""Squared energy distance between two samples ``(n, d)`` and ``(m, d)``, U-statistic.

    .. math:: D^2 = 2\,E\|X - Y\| - E\|X - X'\| - E\|Y - Y'\|

    which is ≥ 0 and zero only when the two distributions are equal; the within-sample
    terms average over distinct pairs, so the estimate is unbiased (and can be slightly
    negative). ``max_draws`` subsamples each sample (without replacement) to bound the
    O(n m) cost.
    """
    from scipy.spatial.distance import cdist, pdist

    a = _subsample(np.asarray(a, dtype=np.float64), max_draws, rng)
    b = _subsample(np.asarray(b, dtype=np.float64), max_draws, rng)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"energy_distance needs two samples (n >= 2, d) of equal d; got "
                         f"{a.shape} and {b.shape}")
    return float(2 * cdist(a, b).mean() - pdist(a).mean() - pdist(b).mean())


def _subsample(x: np.ndarray, max_draws: int | None,
               rng: np.random.Generator | None) -> np.ndarray:
    if max_draws is None or len(x) <= max_draws:
        return x
    rng = rng or np.random.default_rng(0)
    return x[rng.choice(len(x), size=max_draws, replace=False)]


def _check_same_shape(guide: np.ndarray, reference: MCMCReference) -> None:
    expected = reference.samples["z"].shape[2:]
    if guide.ndim != 3 or guide.shape[1:] != expected:
        raise ValueError(f"guide draws must have shape (K, {expected[0]}, {expected[1]}) to match "
                         f"the reference's datapoints and latent_dim; got {guide.shape}")
