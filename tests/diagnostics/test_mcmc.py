"""MCMC reference posteriors: NUTS on p(z | x) against the linear-Gaussian closed form."""

import numpy as np
import pytest

from ppl_vae.data.ppca import exact_posterior
from ppl_vae.diagnostics import inference_data
from ppl_vae.diagnostics.mcmc import (
    check_continuous_latents,
    compare_with_reference,
    energy_distance,
    mcmc_reference,
    reference_distances,
)
from ppl_vae.models import build, load_spec
from ppl_vae.models.linear_gaussian import linear_gaussian_spec, set_ppca_params

DATA_DIM, LATENT_DIM = 6, 2


@pytest.fixture(scope="module")
def correlated_ppca():
    """PPCA with correlated columns (a correlated posterior, covariance off-diagonal ~ −0.5
    in correlation), a Pyro VAE holding it, two datapoints and a 4-chain NUTS reference
    (4 × 1000 draws: over seeds 0–5 the largest R-hat was 1.004, 600 draws reached 1.009)."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(DATA_DIM, LATENT_DIM))
    W[:, 1] = W[:, 0] + 0.5 * W[:, 1]
    b, sigma = rng.normal(size=DATA_DIM), 0.8
    x = (rng.normal(size=(2, LATENT_DIM)) @ W.T + b
         + sigma * rng.normal(size=(2, DATA_DIM))).astype(np.float32)
    vae = build(linear_gaussian_spec(DATA_DIM, LATENT_DIM), "pyro")
    set_ppca_params(vae, W, b, sigma, exact_posterior=False)
    ref = mcmc_reference(vae, x, datapoints=[11, 42], num_chains=4, num_warmup=300,
                         num_draws=1000, seed=0)
    return W, b, sigma, x, vae, ref


def test_reference_matches_closed_form_posterior(correlated_ppca):
    W, b, sigma, x, _, ref = correlated_ppca
    mean, cov = exact_posterior(W, b, sigma, x)
    summary = ref.summary.set_index(["datapoint", "latent_dim"])
    assert ref.max_rhat < 1.01
    assert ref.num_divergent == 0
    # Every comparison: within 4 Monte Carlo standard errors (ArviZ's MCSE, which accounts
    # for autocorrelation); 12 comparisons at 4 se fail by chance with probability < 1e-3.
    for b_i, label in enumerate(ref.datapoints):
        for d in range(LATENT_DIM):
            row = summary.loc[(label, d)]
            assert abs(row["mean"] - mean[b_i, d]) < 4 * row["mcse_mean"]
            assert abs(row["sd"] - np.sqrt(cov[d, d])) < 4 * row["mcse_sd"]
        # Off-diagonal covariance: the mean of the product of centred draws, with its own
        # MCSE from ArviZ on that derived quantity.
        draws = ref.samples["z"][:, :, b_i]
        centred = draws - draws.mean(axis=(0, 1))
        product = centred[..., 0] * centred[..., 1]
        import arviz as az

        mcse = float(az.mcse(product, method="mean"))
        assert abs(product.mean() - cov[0, 1]) < 4 * mcse
    assert cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]) < -0.3  # the test does see correlation


def test_reference_inference_data_has_named_dims(correlated_ppca):
    *_, ref = correlated_ppca
    post = ref.inference_data.posterior
    assert post["z"].dims == ("chain", "draw", "datapoint", "latent_dim")
    assert list(post["datapoint"].values) == [11, 42]
    assert post.sizes["chain"] == 4 and post.sizes["draw"] == 1000
    assert set(ref.inference_data.sample_stats.data_vars) == {"diverging", "energy", "n_steps"}


def test_guide_comparison_sees_the_mean_field_guide_too_narrow(correlated_ppca):
    # Encoder set to the mean-field optimum for this posterior: exact means, variances
    # 1/Λ_ii (Λ the posterior precision) — narrower than the marginal variances Σ_ii.
    W, b, sigma, x, vae, ref = correlated_ppca
    mean, cov = exact_posterior(W, b, sigma, x)
    precision = np.linalg.inv(cov)
    rng = np.random.default_rng(5)
    guide = mean + rng.normal(size=(4000, 2, LATENT_DIM)) / np.sqrt(np.diag(precision))
    table = compare_with_reference(guide, ref)
    expected_ratio = np.sqrt(1 / np.diag(precision) / np.diag(cov))
    # sd of a sample sd over 4000 iid draws is sd/sqrt(2·4000) ~ 1.1 %; MCMC's MCSE adds
    # ~1.5 %: a 0.06 relative tolerance is > 3 se.
    np.testing.assert_allclose(table["sd_ratio"].to_numpy().reshape(2, LATENT_DIM),
                               np.broadcast_to(expected_ratio, (2, LATENT_DIM)), rtol=0.06)
    assert np.all(np.abs(table["mean_shift_sd"]) < 0.1)
    distances = reference_distances(guide, ref)
    # The too-narrow guide is measurably different from p(z | x); two halves of the MCMC
    # draws are not.
    assert np.all(distances["energy_distance"] > 3 * distances["energy_distance_null"].abs())


def test_energy_distance_matches_closed_form():
    # N(0, 1) vs N(1, 1): D² = 2E|X − Y| − 2E|X − X'| with X − Y ~ N(−1, 2), X − X' ~ N(0, 2);
    # E|N(m, s²)| = s√(2/π) exp(−m²/2s²) + m(1 − 2Φ(−m/s)). Tolerance: 4 standard errors of
    # the mean over 20 independent replicates.
    from scipy.stats import norm

    s = np.sqrt(2.0)
    exact = 2 * (s * np.sqrt(2 / np.pi) * np.exp(-1 / (2 * s**2)) + (1 - 2 * norm.cdf(-1 / s))
                 - s * np.sqrt(2 / np.pi))
    rng = np.random.default_rng(0)
    values = np.array([energy_distance(rng.normal(size=(400, 1)), 1 + rng.normal(size=(400, 1)))
                       for _ in range(20)])
    assert abs(values.mean() - exact) < 4 * values.std(ddof=1) / np.sqrt(values.size)


def test_discrete_gates_are_refused_with_the_fix():
    spec = load_spec("masked_laplace")
    with pytest.raises(ValueError, match="relaxed"):
        check_continuous_latents(spec)
    check_continuous_latents(load_spec("masked_relaxed_laplace"))


@pytest.mark.slow
def test_mcmc_samples_a_relaxed_masked_model_and_records_the_code():
    spec = load_spec("masked_relaxed_laplace").replace(
        data_shape=(5,), latent_dim=2,
        encoder=load_spec("linear_gaussian").encoder, decoder=load_spec("linear_gaussian").decoder)
    vae = build(spec, "numpyro", seed=1)
    x = (np.random.default_rng(0).random((1, 5)) < 0.5).astype(np.float32)
    ref = mcmc_reference(vae, x, num_chains=2, num_warmup=50, num_draws=50)
    assert set(ref.samples) == {"gate", "slab", "z"}
    np.testing.assert_allclose(ref.samples["z"], ref.samples["gate"] * ref.samples["slab"],
                               rtol=1e-5, atol=1e-7)
    assert inference_data.DATAPOINT in ref.inference_data.posterior["gate"].dims
