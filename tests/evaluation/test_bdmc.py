"""Tests for :mod:`ppl_vae.evaluation.bdmc`: forward and reverse AIS sandwich the PPCA closed
form, the band narrows with T, and reverse AIS from the exact posterior is unbiased for
1 / p(x)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from ppl_vae.data import ppca as lg
from ppl_vae.evaluation import (
    BDMC_COLUMNS,
    EvaluationConfig,
    ais_log_likelihood,
    bdmc,
    evaluate_split,
    importance_sample,
    looseness_note,
    sigmoid_schedule,
    simulate,
)
from ppl_vae.evaluation.ais import AISChains, AISSettings
from ppl_vae.evaluation.bdmc import reverse_steps
from ppl_vae.models import build, linear_gaussian, load_spec
from ppl_vae.spec import NetworkSpec

PPCA = lg.orthogonal_ppca(10, 3, noise_scale=0.3, seed=1)


def _ppca_vae(backend):
    vae = build(linear_gaussian.linear_gaussian_spec(10, 3), backend)
    linear_gaussian.set_ppca_params(vae, PPCA.W, PPCA.b, PPCA.sigma)
    return vae


def _mean_se(values):
    return values.mean(), values.std(ddof=1) / np.sqrt(values.size)


@pytest.mark.parametrize("backend", ["numpyro", "pyro"])
def test_forward_and_reverse_ais_sandwich_the_ppca_log_likelihood(backend):
    result = bdmc(_ppca_vae(backend), 40, temperatures=(20, 300), is_samples=(10,), seed=3)
    assert list(result.table.columns) == BDMC_COLUMNS
    exact = lg.exact_log_likelihood(PPCA.W, PPCA.b, PPCA.sigma, result.data.x)
    for steps in (20, 300):
        # E[lower] ≤ log p(x) ≤ E[upper] per datapoint; over 40 datapoints the mean
        # difference may cross zero by noise only: 3 standard errors of that mean.
        low, low_se = _mean_se(result.lower[steps] - exact)
        up, up_se = _mean_se(result.upper[steps] - exact)
        assert low < 3 * low_se and up > -3 * up_se
    # At T = 20 both bounds are clearly loose, at T = 300 the band is far narrower: the gap
    # falls by more than 5 standard errors of the difference (paired over datapoints).
    gaps = {t: result.upper[t] - result.lower[t] for t in (20, 300)}
    shrink, shrink_se = _mean_se(gaps[20] - gaps[300])
    assert shrink > 5 * shrink_se and gaps[300].mean() < 1.5
    # The encoder is the exact posterior, so IS is exact (constant weights; float32 rounding).
    np.testing.assert_allclose(result.importance[10], exact, atol=2e-3)
    table = result.table.set_index(["quantity", "size"])
    np.testing.assert_allclose(table.loc[("upper_minus_is", 10), "mean"],
                               (result.upper[300] - result.importance[10]).mean(), rtol=1e-12)
    assert result.looseness()[0] == pytest.approx(table.loc[("upper_minus_is", 10), "mean"])
    assert "T = 300" in looseness_note(result.table) and "K = 10" in looseness_note(
        result.table)


def test_simulated_data_come_from_the_ppca_joint():
    data = simulate(_ppca_vae("numpyro"), 4000, seed=0)
    # z ~ N(0, I) and x − W z − b ~ N(0, σ² I): means within 4 se (se = 1/√4000 resp.
    # σ/√4000), standard deviations within 4 se (se of a sd ≈ sd/√(2n)).
    resid = data.x - data.z @ PPCA.W.T - PPCA.b
    n = data.z.shape[0]
    assert np.all(np.abs(data.z.mean(0)) < 4 / np.sqrt(n))
    assert np.all(np.abs(data.z.std(0) - 1) < 4 / np.sqrt(2 * n))
    assert np.all(np.abs(resid.mean(0)) < 4 * PPCA.sigma / np.sqrt(n))
    assert np.all(np.abs(resid.std(0) / PPCA.sigma - 1) < 4 / np.sqrt(2 * n))
    assert data.c is None


def test_reverse_ais_from_the_exact_posterior_is_unbiased_for_one_over_p_x():
    r"""1-D: z ~ N(0, 1), x | z ~ N(z, σ²), σ = 1.5, x = 1. Reverse AIS from z ~ p(z | x)
    has E[w'] = 1 / p(x) exactly, forward AIS E[w] = p(x); with σ > 1 the weights have finite
    variance even at T = 1 (E_posterior[p(x | z)^−2] < ∞), so a standard error is honest."""
    sigma, x = 1.5, np.array([[1.0]])
    vae = build(linear_gaussian.linear_gaussian_spec(1, 1), "numpyro")
    linear_gaussian.set_ppca_params(vae, np.ones((1, 1)), np.zeros(1), sigma)
    log_px = norm.logpdf(1.0, scale=np.sqrt(1 + sigma**2))
    post_mean, post_sd = 1.0 / (1 + sigma**2), sigma / np.sqrt(1 + sigma**2)
    chains, betas = 20000, sigmoid_schedule(4)
    runner = AISChains(vae, x.astype(np.float32), settings=AISSettings(start="prior"))
    import jax

    k_pilot, k_fwd, k_rev = jax.random.split(jax.random.PRNGKey(0), 3)
    steps = runner.pilot_step_sizes(betas, 0.5, 4, k_pilot)
    z_start = post_mean + post_sd * np.random.default_rng(0).normal(size=(chains, 1, 1))
    log_rev, _, _ = runner.run(betas[::-1], reverse_steps(steps), chains, k_rev, z_start)
    log_fwd, _, _ = runner.run(betas, steps, chains, k_fwd)
    for ratio in (np.exp(log_rev[:, 0] + log_px), np.exp(log_fwd[:, 0] - log_px)):
        mean, se = _mean_se(ratio)
        assert abs(mean - 1) < 4 * se and se < 0.01  # E = 1 exactly
    # ... while the log of one reverse weight is biased (Jensen): −E[log w'] > log p(x) by
    # far more than its standard error, the looseness a single-chain upper bound carries.
    bias, bias_se = _mean_se(-log_rev[:, 0] - log_px)
    assert bias > 10 * bias_se


def _tiny_cvae():
    spec = load_spec("cvae_mnist").replace(data_shape=(6,), latent_dim=2,
                                           encoder=NetworkSpec(hidden=(4,)),
                                           decoder=NetworkSpec(hidden=(4,)))
    return build(spec, "numpyro", seed=1)


def test_ais_of_a_conditional_vae_estimates_log_p_x_given_c():
    vae = _tiny_cvae()
    data = simulate(vae, 4, seed=2)
    np.testing.assert_array_equal(data.c, [0, 1, 2, 3])  # the classes in turn
    ais = ais_log_likelihood(vae, data.x, num_steps=200, num_chains=64, start="prior",
                             c=data.c, seed=0)
    iwae = importance_sample(vae, data.x, 20000, c=data.c, seed=0)
    # Two estimates of log p(x | c) (AIS unbiased in p, IWAE at K = 20000 on a 2-d latent
    # nearly so): within 4 combined standard errors plus 0.01 nats of IWAE bias.
    assert np.all(np.abs(ais.log_likelihood - iwae.log_likelihood)
                  < 4 * np.hypot(ais.stderr, iwae.stderr) + 0.01)
    other = importance_sample(vae, data.x, 20000, c=(data.c + 5) % 10, seed=0)
    assert np.any(np.abs(other.log_likelihood - iwae.log_likelihood) > 0.05)  # labels matter
    table, _ = evaluate_split(vae, data.x, c=data.c, config=EvaluationConfig(
        num_samples=10, ais_points=2, ais_steps=10, ais_chains=2, num_model_samples=0))
    assert np.isfinite(table.set_index("metric").loc["ais_log_likelihood", "value"])


def test_bdmc_of_a_conditional_vae_simulates_given_the_labels():
    result = bdmc(_tiny_cvae(), 6, temperatures=(10,), is_samples=(10,), c=7, seed=0)
    np.testing.assert_array_equal(result.data.c, np.full(6, 7))
    assert np.all(np.isfinite(result.table["mean"]))


def test_bdmc_refuses_models_and_settings_it_cannot_handle():
    masked = build(load_spec("masked_laplace").replace(
        data_shape=(6,), latent_dim=2, encoder=NetworkSpec(hidden=()),
        decoder=NetworkSpec(hidden=())), "numpyro")
    with pytest.raises(ValueError, match="masked codes"):
        bdmc(masked, 2)
    flow = build(load_spec("gaussian_flowprior").replace(
        data_shape=(6,), latent_dim=2, encoder=NetworkSpec(hidden=(4,)),
        decoder=NetworkSpec(hidden=(4,))), "numpyro")
    with pytest.raises(ValueError, match="prior family 'flow' has none in closed form"):
        bdmc(flow, 2)
    vae = _ppca_vae("numpyro")
    with pytest.raises(ValueError, match="temperatures must name at least one"):
        bdmc(vae, 2, temperatures=())
    with pytest.raises(ValueError, match="is_samples must be positive integers"):
        bdmc(vae, 2, is_samples=(0,))
    with pytest.raises(ValueError, match="num_points must be a positive integer"):
        bdmc(vae, 0)
