"""Tests for :mod:`ppl_vae.evaluation.ais`: annealed importance sampling against PPCA."""

from __future__ import annotations

import numpy as np
import pytest

from ppl_vae.data import ppca as lg
from ppl_vae.evaluation import ais_log_likelihood, importance_sample, sigmoid_schedule
from ppl_vae.models import as_numpyro, build, linear_gaussian, load_spec
from ppl_vae.spec import NetworkSpec

PPCA = lg.orthogonal_ppca(10, 3, noise_scale=0.3, seed=1)


def _data(num, seed):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(num, 3)) @ PPCA.W.T + PPCA.b
            + PPCA.sigma * rng.normal(size=(num, 10)))


def _wrong_guide_vae(backend):
    """PPCA decoder; guide = exact posterior with scales doubled and means shifted by 0.1:
    an ELBO gap of about 3 nats for AIS to close."""
    vae = build(linear_gaussian.linear_gaussian_spec(10, 3), backend)
    linear_gaussian.set_ppca_params(vae, PPCA.W, PPCA.b, PPCA.sigma)
    params = vae.get_params()
    bias = np.array(params["encoder.0.bias"], dtype=np.float64)
    scale = np.log1p(np.exp(bias[3:])) + vae.spec.scale_floor
    bias[3:] = lg.inverse_softplus(2.0 * scale - vae.spec.scale_floor)
    bias[:3] += 0.1
    vae.set_params(params | {"encoder.0.bias": bias})
    return vae


def test_ais_lands_within_005_nats_of_the_ppca_closed_form():
    vae = _wrong_guide_vae("numpyro")
    x = _data(3, seed=0)
    exact = lg.exact_log_likelihood(PPCA.W, PPCA.b, PPCA.sigma, x)
    est = ais_log_likelihood(vae, x, num_steps=2000, num_chains=128, seed=0)
    # AIS is unbiased for p(x); with 128 chains its se is ~0.013 nats (checked below), so
    # the 0.05-nat band is at least 3 se wide.
    assert np.all(est.stderr < 0.0167)
    np.testing.assert_array_less(np.abs(est.log_likelihood - exact), 0.05)
    assert est.log_weights.shape == (128, 3) and est.samples.shape == (128, 3, 3)
    assert np.all((est.acceptance > 0.4) & (est.acceptance < 0.95))
    # Beside the IWAE bound of the same guide: the ELBO gap is ~3 nats, AIS closes it.
    iwae = importance_sample(vae, x, 100, seed=0)
    assert np.all(est.log_likelihood > iwae.elbo + 2.0)
    # The final states are (near-uniformly weighted) posterior draws: their mean is the exact
    # posterior mean. 9 comparisons of independent chains' means: the largest |z| exceeds 5
    # with probability ≈ 5e-6 (no drift at 512 chains; the largest here is 4.0).
    mean, cov = lg.exact_posterior(PPCA.W, PPCA.b, PPCA.sigma, x)
    sem = np.sqrt(np.diag(cov) / 128)
    assert np.all(np.abs(est.samples.mean(0) - mean) < 5 * sem)


@pytest.mark.slow
def test_ais_from_the_prior_matches_the_closed_form_on_a_pyro_vae():
    # The Pyro VAE is evaluated through its NumPyro copy; the prior start needs no encoder.
    vae = _wrong_guide_vae("pyro")
    x = _data(3, seed=1)
    exact = lg.exact_log_likelihood(PPCA.W, PPCA.b, PPCA.sigma, x)
    est = ais_log_likelihood(vae, x, num_steps=3000, num_chains=256, start="prior", seed=1)
    # Unbiased for p(x): within 4 se of the closed form, and the se small enough to matter.
    assert np.all(np.abs(est.log_likelihood - exact) < 4 * est.stderr)
    assert np.all(est.stderr < 0.03)


def test_a_pyro_vae_is_copied_into_numpyro_with_its_weights():
    pyro_vae = _wrong_guide_vae("pyro")
    copy = as_numpyro(pyro_vae)
    assert copy.backend == "numpyro" and copy.spec == pyro_vae.spec
    for name, value in pyro_vae.get_params().items():
        np.testing.assert_array_equal(copy.get_params()[name], value)
    assert as_numpyro(pyro_vae) is copy  # reused, so the compiled AIS is reused too


def test_sigmoid_schedule_runs_from_zero_to_one_monotonically():
    betas = sigmoid_schedule(100)
    assert betas.shape == (101,) and betas[0] == 0.0 and betas[-1] == 1.0
    assert np.all(np.diff(betas) > 0)
    # Denser near the ends than in the middle.
    assert np.diff(betas)[0] < np.diff(betas)[50] > np.diff(betas)[-1]


def test_ais_refuses_models_and_settings_it_cannot_handle():
    masked = build(load_spec("masked_laplace").replace(
        data_shape=(10,), latent_dim=2, encoder=NetworkSpec(hidden=()),
        decoder=NetworkSpec(hidden=())), "numpyro")
    x = (_data(2, 0) > 0).astype(np.float32)
    with pytest.raises(ValueError, match="masked codes"):
        ais_log_likelihood(masked, x, num_steps=10)
    vae = _wrong_guide_vae("numpyro")
    with pytest.raises(ValueError, match="start must be one of"):
        ais_log_likelihood(vae, _data(2, 0), start="posterior")
    with pytest.raises(ValueError, match="num_chains"):
        ais_log_likelihood(vae, _data(2, 0), num_chains=0)


@pytest.mark.slow
def test_held_out_data_of_an_encoder_free_model_get_an_ais_estimate():
    from ppl_vae.evaluation import EvaluationConfig, evaluate_split

    spec = load_spec("latent_laplace").replace(data_shape=(10,), latent_dim=2,
                                               decoder=NetworkSpec(hidden=(8,)))
    vae = build(spec, "numpyro", num_data=50)
    x = (_data(4, seed=3) > PPCA.b).astype(np.float32)
    config = EvaluationConfig(ais_points=4, ais_steps=100, ais_chains=8, ais_start="prior")
    table, notes = evaluate_split(vae, x, config=config)
    value = table.set_index("metric")["value"]
    assert np.isfinite(value["ais_log_likelihood"]) and "elbo" not in value.index
    assert any("skipped" in note for note in notes)


def test_ais_from_a_prior_without_a_closed_form_variance_says_to_start_at_q():
    spec = load_spec("gaussian_flowprior").replace(data_shape=(6,), latent_dim=2,
                                                   encoder=NetworkSpec(hidden=(4,)),
                                                   decoder=NetworkSpec(hidden=(4,)))
    vae = build(spec, "numpyro")
    x = (np.random.default_rng(0).random((2, 6)) > 0.5).astype(np.float32)
    with pytest.raises(ValueError, match="prior family 'flow' has none in closed form: use "
                                         "start='q'"):
        ais_log_likelihood(vae, x, num_steps=3, num_chains=2, start="prior")
