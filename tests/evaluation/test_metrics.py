"""Tests for :mod:`ppl_vae.evaluation.metrics`: KL per dimension, active units, sparsity,
reconstruction, nearest neighbours and Parzen windows, against closed forms."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from ppl_vae.data import ppca as lg
from ppl_vae.data.ppca import PPCAParams
from ppl_vae.evaluation import (
    EvaluationConfig,
    active_units,
    code_sparsity,
    evaluate_split,
    importance_sample,
    kl_per_dimension,
    nearest_training_neighbours,
    parzen_log_likelihood,
    reconstruction_error,
)
from ppl_vae.evaluation.metrics import model_samples
from ppl_vae.models import build, float64, linear_gaussian, load_spec
from ppl_vae.spec import NetworkSpec

DEAD = [1, 3]


def _ppca_with_dead_dims():
    """Orthogonal PPCA with zero columns 1 and 3: those units carry no information, so the
    exact posterior there is the prior and their posterior mean is constant."""
    base = lg.orthogonal_ppca(8, 4, noise_scale=0.5, seed=3)
    W = base.W.copy()
    W[:, DEAD] = 0.0
    return PPCAParams(W, base.b, base.sigma)


PPCA = _ppca_with_dead_dims()


def _data(params, num, seed):
    rng = np.random.default_rng(seed)
    data_dim, latent_dim = params.W.shape
    return (rng.normal(size=(num, latent_dim)) @ params.W.T + params.b
            + params.sigma * rng.normal(size=(num, data_dim)))


def _vae(backend, kl="analytic"):
    spec = linear_gaussian.linear_gaussian_spec(8, 4).replace(kl=kl)
    vae = build(spec, backend, dtype="float64")
    linear_gaussian.set_ppca_params(vae, PPCA.W, PPCA.b, PPCA.sigma)
    return vae


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_active_units_finds_the_dead_dimensions(backend):
    x = _data(PPCA, 4000, seed=0)
    with jax.enable_x64(True):
        units = active_units(_vae(backend), x)
    assert units.count == 2 and list(np.flatnonzero(~units.active)) == DEAD
    np.testing.assert_array_equal(units.activity[DEAD], 0.0)  # a constant mean: exactly 0
    # Alive: E[z_u | x] = w_uᵀ(x − b)/(|w_u|² + σ²) has variance |w_u|²/(|w_u|² + σ²) under
    # the PPCA data distribution; a sample variance of 4000 points has relative sd
    # sqrt(2/4000) ≈ 2.2%, so 10% is > 4 sd.
    norms = np.sum(PPCA.W**2, axis=0)
    alive = [0, 2]
    np.testing.assert_allclose(units.activity[alive],
                               norms[alive] / (norms[alive] + PPCA.sigma**2), rtol=0.1)


def test_kl_per_dimension_matches_the_closed_form_analytic_and_monte_carlo():
    x = _data(PPCA, 200, seed=1)
    mean, cov = lg.exact_posterior(PPCA.W, PPCA.b, PPCA.sigma, x)
    var = np.diag(cov)
    # KL(N(μ, s²) ‖ N(0, 1)) = (μ² + s² − 1 − log s²)/2 per dimension, averaged over x.
    expected = (0.5 * (mean**2 + var - 1 - np.log(var))).mean(0)
    analytic = kl_per_dimension(_vae("pyro"), x)
    assert analytic.method == "analytic"
    np.testing.assert_allclose(analytic.kl, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(analytic.kl[DEAD], 0.0, atol=1e-12)
    mc = kl_per_dimension(_vae("pyro", kl="monte-carlo"), x, num_samples=200, seed=0)
    assert mc.method == "monte-carlo"
    # Monte Carlo over 200 draws × 200 points: within 4 of its standard errors.
    assert np.all(np.abs(mc.kl - expected) < 4 * mc.stderr + 1e-12)


def test_reconstruction_error_is_the_decoded_posterior_mean():
    x = _data(PPCA, 50, seed=2)
    mean, _ = lg.exact_posterior(PPCA.W, PPCA.b, PPCA.sigma, x)
    expected = np.mean((mean @ PPCA.W.T + PPCA.b - x) ** 2, axis=1)
    np.testing.assert_allclose(reconstruction_error(_vae("pyro"), x), expected, rtol=1e-10)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_code_sparsity_is_the_mean_gate_probability(backend):
    spec = load_spec("masked_laplace").replace(data_shape=(6,), latent_dim=3,
                                               encoder=NetworkSpec(hidden=()),
                                               decoder=NetworkSpec(hidden=()))
    vae = build(spec, backend)
    logits = np.array([-2.0, 0.5, 3.0])
    params = vae.get_params()
    weight = np.array(params["encoder.0.weight"])
    bias = np.array(params["encoder.0.bias"])
    weight[6:] = 0.0  # gate logits do not depend on x ...
    bias[6:] = logits  # ... and are these
    vae.set_params(params | {"encoder.0.weight": weight, "encoder.0.bias": bias})
    x = (np.random.default_rng(0).random((10, 6)) > 0.5).astype(np.float32)
    # Exact up to float32: sigmoid of the logits.
    np.testing.assert_allclose(code_sparsity(vae, x), 1 / (1 + np.exp(-logits)), rtol=1e-6)
    with pytest.raises(ValueError, match="no gates"):
        code_sparsity(_vae("pyro"), _data(PPCA, 3, 0))


def test_nearest_training_neighbours_finds_the_perturbed_points():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(300, 5)) * 10
    pick = rng.choice(300, size=20, replace=False)
    noise = rng.normal(size=(20, 5)) * 1e-3
    distances, indices = nearest_training_neighbours(train[pick] + noise, train)
    np.testing.assert_array_equal(indices[:, 0], pick)
    np.testing.assert_allclose(distances[:, 0], np.linalg.norm(noise, axis=1), rtol=1e-9)


def test_parzen_window_is_the_gaussian_kernel_density_and_warns():
    rng = np.random.default_rng(0)
    samples, x = rng.normal(size=(400, 3)), rng.normal(size=(10, 3))
    with pytest.warns(UserWarning, match="unreliable in high dimension"):
        est = parzen_log_likelihood(samples, x, bandwidths=0.3)
    # log p̂(x) = logsumexp_i(−‖x − s_i‖²/2σ²) − log n − (D/2) log(2πσ²), written out.
    sq = ((x[:, None, :] - samples[None]) ** 2).sum(-1)
    direct = logsumexp(-sq / (2 * 0.3**2), axis=1) - math.log(400) - 1.5 * math.log(
        2 * math.pi * 0.3**2)
    np.testing.assert_allclose(est.log_likelihood, direct, rtol=1e-8)
    # With many samples and a bandwidth chosen on validation data, it approaches the true
    # density in low dimension: mean log-density of N(0, I₂) within 0.1 nats.
    many, test, valid = (rng.normal(size=(n, 2)) for n in (4000, 500, 500))
    with pytest.warns(UserWarning, match="unreliable"):
        chosen = parzen_log_likelihood(many, test, valid=valid)
    truth = multivariate_normal(np.zeros(2), np.eye(2)).logpdf(test).mean()
    assert abs(chosen.log_likelihood.mean() - truth) < 0.1
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="validation data"):
        parzen_log_likelihood(samples, x)


def test_model_samples_leave_global_random_states_alone():
    vae = build(load_spec("gaussian_gaussian").replace(
        data_shape=(6,), latent_dim=2, encoder=NetworkSpec(hidden=(4,)),
        decoder=NetworkSpec(hidden=(4,))), "pyro")
    import torch

    state = torch.random.get_rng_state()
    first = model_samples(vae, 5, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(first, model_samples(vae, 5, seed=3))


def test_evaluate_split_skips_what_a_mixture_prior_cannot_give():
    spec = load_spec("gaussian_mixture").replace(data_shape=(8,), latent_dim=2,
                                                 encoder=NetworkSpec(hidden=(4,)),
                                                 decoder=NetworkSpec(hidden=(4,)))
    vae = build(spec, "pyro")
    x = (np.random.default_rng(0).random((6, 8)) > 0.5).astype(np.float32)
    table, notes = evaluate_split(vae, x, run="r")
    assert not any(table["metric"].str.startswith("kl_dim_"))
    assert any("prior family 'mixture' (a mixture or a flow) does not factorise" in note
               for note in notes)
    assert table.set_index("metric").loc["active_units", "value"] >= 0


def _metric(table, name):
    row = table.set_index("metric").loc[name]
    return float(row["value"]), float(row["stderr"])


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_rate_in_bits_is_the_closed_form_kl_over_ln_2(backend):
    x = _data(PPCA, 40, seed=1)
    with jax.enable_x64(True):
        vae = _vae(backend)
        est = importance_sample(vae, x, 50, seed=0)
        kl = float64(vae.kl(vae.as_tensor(x)))
        table, _ = evaluate_split(vae, x, estimate=est)
    np.testing.assert_allclose(est.rate, kl, rtol=1e-12)
    np.testing.assert_array_equal(est.rate_stderr, 0.0)
    value, _ = _metric(table, "rate_bits")
    np.testing.assert_allclose(value, kl.mean() / math.log(2.0), rtol=1e-12)
    assert "rate_bits_mc" not in set(table["metric"])


def test_monte_carlo_rate_agrees_with_the_closed_form_within_its_standard_error():
    """The same weights with kl = 'monte-carlo': the rate is the mean of log q − log p over
    the importance draws. Per datapoint the error is within 4.5 standard errors (40 points:
    family-wise false-alarm probability 40 · 7e-6); the mean over data within 4."""
    x = _data(PPCA, 40, seed=1)
    exact = float64(_vae("pyro").kl(_vae("pyro").as_tensor(x)))
    vae = _vae("pyro", kl="monte-carlo")
    est = importance_sample(vae, x, 2000, seed=0)
    assert np.all(est.rate_stderr > 0)
    assert np.all(np.abs(est.rate - exact) < 4.5 * est.rate_stderr)
    table, _ = evaluate_split(vae, x, estimate=est)
    value, se = _metric(table, "rate_bits_mc")
    np.testing.assert_allclose(se, np.sqrt(np.sum(est.rate_stderr**2)) / 40 / math.log(2.0),
                               rtol=1e-12)
    # the error of the Monte Carlo rate is named as such, not as a spread over datapoints
    assert table.set_index("metric").loc["rate_bits_mc", "stderr_source"] == "monte-carlo"
    assert abs(value - exact.mean() / math.log(2.0)) < 4 * se
    assert "rate_bits" not in set(table["metric"])


def test_point_codes_have_no_rate_it_is_missing_not_zero():
    spec = load_spec("latent_laplace")
    spec = spec.replace(data_shape=(6,), latent_dim=2, decoder=NetworkSpec(hidden=(4,)),
                        posterior=dataclasses.replace(spec.posterior, codes="point"))
    vae = build(spec, "numpyro", num_data=3)
    x = (np.random.default_rng(0).random((3, 6)) > 0.5).astype(np.float32)
    config = EvaluationConfig(ais_points=1, ais_steps=3, ais_chains=2, ais_start="prior")
    table, notes = evaluate_split(vae, x, idx=np.arange(3), config=config)
    assert math.isnan(_metric(table, "rate_bits")[0])
    assert any("rate_bits is NaN" in note for note in notes)
