"""Estimators by name and the ELBO classes written here: STL, DReG and score-function baselines.

Toy (ppl_vae.variance.toys.QuadraticToy): q(z) = N(μ, σ²), model z ~ N(m, s²) plus a factor
−(z − k)². Exact answers: the ELBO gradient ∂μ in closed form, the IWAE gradient by
Gauss–Hermite quadrature, and the exact Gaussian posterior. Statistical checks allow Z = 5
standard errors (a false alarm has probability < 6e-7 per comparison, normal approximation).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pandas as pd
import pyro
import pytest
import torch

import ppl_vae.models
from ppl_vae.estimators import (
    ESTIMATORS,
    DReG,
    ScoreBaseline,
    estimator_names,
    get_estimator,
)
from ppl_vae.models import numpyro_elbos, pyro_elbos
from ppl_vae.spec import NetworkSpec
from ppl_vae.variance import gradient_variance
from ppl_vae.variance.toys import QuadraticToy

Z = 5.0
TOY = QuadraticToy(mu=0.3, sigma=0.8, k=1.2)
DRAWS = {"numpyro": 4000, "pyro": 500}


def toy_rows(toy, backend, estimators, particles=(1,), num_draws=None):
    model, guide = toy.program(backend)
    with jax.enable_x64(True):
        df = gradient_variance(model, guide, estimators=estimators, num_particles=list(particles),
                               num_draws=num_draws or DRAWS[backend], backend=backend,
                               by="coordinate", seed=11)
    return df.set_index(["estimator", "particles", "param"])


def test_estimator_names_and_labels():
    assert set(ESTIMATORS) == {"reparam", "analytic-kl", "score", "score-baseline", "iwae", "vimco",
                               "stl", "dreg"}
    assert "score-nn-baseline" in estimator_names()
    assert get_estimator("score-nn-baseline") == ScoreBaseline(neural=True)
    assert get_estimator("score-nn-baseline").label == "score-nn-baseline"
    assert get_estimator("score-baseline").label == "score-baseline"
    assert get_estimator(DReG()) == DReG() and get_estimator("dreg").label == "dreg"
    for name in ESTIMATORS:
        assert ESTIMATORS[name].__doc__ and get_estimator(name).name == name
    with pytest.raises(ValueError, match="beta"):
        ScoreBaseline(beta=1.0)
    with pytest.raises(ValueError, match="hidden"):
        ScoreBaseline(hidden=0)
    with pytest.raises(ValueError, match="score-nn-baseline"):
        get_estimator("stick")


@pytest.mark.parametrize("backend", ["numpyro", "pyro"])
def test_stl_and_dreg_are_unbiased(backend):
    df = toy_rows(TOY, backend, ["stl", "dreg"], particles=(2,))
    n = DRAWS[backend]
    for name, exact in [("stl", TOY.exact_gradient()), ("dreg", TOY.iwae_gradient(2))]:
        row = df.loc[(name, 2, "mu")]
        assert abs(row["mean"] - exact) < Z * np.sqrt(row["variance"] / n), name
    # DReG is unbiased for the IWAE bound, whose gradient differs from the ELBO's here
    assert abs(TOY.iwae_gradient(2) - TOY.exact_gradient()) > 0.3


def test_dreg_with_one_particle_is_stl():
    # the same random numbers give the same gradient (an exact identity)
    model, guide = TOY.program("numpyro")
    params = {"mu": jnp.array(TOY.mu), "sigma": jnp.array(TOY.sigma)}
    grads = [jax.jit(jax.grad(lambda p, e=elbo: e.loss(jax.random.PRNGKey(5), p, model,
                                                          guide)))(params)
             for elbo in (numpyro_elbos.TraceSTL_ELBO(), numpyro_elbos.DReG_ELBO())]
    for name in params:
        np.testing.assert_allclose(grads[0][name], grads[1][name], rtol=1e-6)
    model, guide = TOY.program("pyro")
    pyro_grads = []
    for elbo in (pyro_elbos.TraceSTL_ELBO(), pyro_elbos.DReG_ELBO(max_plate_nesting=0)):
        pyro.set_rng_seed(5)
        params = [pyro.param(n).unconstrained() for n in ("mu", "sigma")]
        pyro_grads.append(torch.autograd.grad(elbo.differentiable_loss(model, guide), params))
    for a, b in zip(*pyro_grads, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)


def test_iwae_quadrature_reduces_to_the_elbo_gradient():
    np.testing.assert_allclose(TOY.iwae_gradient(1), TOY.exact_gradient(), rtol=1e-10)


@pytest.mark.parametrize("backend", ["numpyro", "pyro"])
def test_stl_gradient_vanishes_when_q_is_the_posterior(backend):
    prior = QuadraticToy(prior_loc=0.0, prior_scale=1.0, k=1.2)
    loc, scale = prior.exact_posterior()
    toy = QuadraticToy(mu=loc, sigma=scale, k=1.2, prior_loc=0.0, prior_scale=1.0)
    df = pd.concat([toy_rows(toy, backend, ["stl"], particles=(1,), num_draws=200),
                    toy_rows(toy, backend, ["dreg"], particles=(3,), num_draws=200)])
    for name, particles in [("stl", 1), ("dreg", 3)]:
        for param in ("mu", "sigma"):
            row = df.loc[(name, particles, param)]
            # every draw is zero up to float64 rounding: ∂ log w / ∂z = 0 everywhere
            assert row["variance"] < 1e-20 and abs(row["mean"]) < 1e-9, (name, param)


def test_dreg_reduces_encoder_variance_as_particles_grow():
    # Tucker et al. (2018): the IWAE encoder gradient's SNR falls with K, DReG's does not.
    df = toy_rows(TOY, "numpyro", ["iwae", "dreg"], particles=(16,), num_draws=3000)
    assert df.loc[("dreg", 16, "mu"), "snr"] > 2 * df.loc[("iwae", 16, "mu"), "snr"]


def tiny_spec(name):
    return ppl_vae.models.load_spec(name).replace(
        latent_dim=2, data_shape=(6,), encoder=NetworkSpec(hidden=(5,)),
        decoder=NetworkSpec(hidden=(5,)))


X = (np.random.default_rng(0).random((4, 6)) < 0.4).astype(np.float32)


def numpyro_svi(vae, estimator, steps=3, num_particles=1):
    elbo, guide = ppl_vae.models.make_elbo(vae, estimator, num_particles, example_batch=X)
    svi = numpyro.infer.SVI(vae.model, guide, optax.adam(1e-2), elbo)
    x = vae.as_tensor(X)
    state = svi.init(jax.random.PRNGKey(0), x)
    update = jax.jit(svi.update)
    losses = []
    for _ in range(steps):
        state, loss = update(state, x)
        losses.append(float(loss))
    return svi, state, losses


def pyro_svi(vae, estimator, steps=3, num_particles=1):
    elbo, guide = ppl_vae.models.make_elbo(vae, estimator, num_particles)
    svi = pyro.infer.SVI(vae.model, guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
    return [svi.step(vae.as_tensor(X)) for _ in range(steps)]


@pytest.mark.parametrize("estimator", [
    "dreg", "score-nn-baseline", pytest.param("stl", marks=pytest.mark.slow),
    pytest.param("score-baseline", marks=pytest.mark.slow)])
def test_new_elbos_train_a_vae_on_both_backends(estimator):
    name = "masked_laplace" if "baseline" in estimator else "gaussian_laplace"
    nvae = ppl_vae.models.build(tiny_spec(name), "numpyro")
    before = nvae.get_params()
    svi, state, losses = numpyro_svi(nvae, estimator, num_particles=2)
    assert np.all(np.isfinite(losses))
    after = svi.get_params(state)
    assert any(not np.allclose(before[k], after[k]) for k in before)
    pvae = ppl_vae.models.build(tiny_spec(name), "pyro")
    before = pvae.get_params()
    assert np.all(np.isfinite(pyro_svi(pvae, estimator, num_particles=2)))
    after = pvae.get_params()
    assert any(not np.allclose(before[k], after[k]) for k in before)
    if estimator == "score-nn-baseline":
        names = set(pyro.get_param_store().keys())
        assert any(n.startswith("baseline.gate") for n in names)
        assert any(n.startswith("baseline.slab") for n in names)
        trained = svi.get_params(state)
        # the output layer starts at zero: it moved, so the baseline loss trains the network
        assert np.abs(trained["baseline.gate.1.weight"]).max() > 0
        assert "baseline.slab.0.bias" in trained


def test_numpyro_baseline_state_follows_the_decaying_average():
    # One particle and one latent site: the learning signal of z is the whole log-ratio,
    # i.e. −loss, so the first update from b = 0 is exactly (1 − β)(−loss).
    model, guide = TOY.program("numpyro")
    elbo, wrapped = numpyro_elbos.make_elbo(ScoreBaseline(beta=0.8), guide)
    tr = numpyro.handlers.trace(numpyro.handlers.seed(wrapped, 0)).get_trace()
    state = {n: s["value"] for n, s in tr.items() if s["type"] == "mutable"}
    assert list(state) == ["baseline.z.average"] and float(state["baseline.z.average"]) == 0.0
    params = {"mu": jnp.array(TOY.mu), "sigma": jnp.array(TOY.sigma), **state}
    out = elbo.loss_with_mutable_state(jax.random.PRNGKey(1), params, model, wrapped)
    np.testing.assert_allclose(out["mutable_state"]["baseline.z.average"],
                               (1 - 0.8) * -out["loss"], rtol=1e-6)
    params["baseline.z.average"] = out["mutable_state"]["baseline.z.average"]
    again = elbo.loss_with_mutable_state(jax.random.PRNGKey(2), params, model, wrapped)
    np.testing.assert_allclose(again["mutable_state"]["baseline.z.average"],
                               0.8 * params["baseline.z.average"] + 0.2 * -again["loss"],
                               rtol=1e-6)


def test_baselines_cut_the_score_variance_on_a_masked_vae():
    vae = ppl_vae.models.build(tiny_spec("masked_laplace"), "numpyro", seed=2)
    # the neural baseline is added to the decaying average: both parts are exercised
    df = gradient_variance(vae.model, vae.guide, vae.as_tensor(X), num_draws=500,
                           estimators=["score", "score-nn-baseline"], baseline_warmup=100,
                           by="group").set_index(["estimator", "group"])["variance"]
    assert df[("score-nn-baseline", "encoder")] < 0.5 * df[("score", "encoder")]


@pytest.mark.parametrize("backend", ["numpyro", "pyro"])
def test_dreg_scales_subsampled_plates_after_the_log_mean_exp(backend):
    # A data plate of size N over a batch of B scales the summed IWAE bound by N / B exactly.
    vae = ppl_vae.models.build(tiny_spec("gaussian_gaussian"), backend)
    x = vae.as_tensor(X)
    if backend == "numpyro":
        elbo = numpyro_elbos.DReG_ELBO(num_particles=3)
        loss = [float(jax.jit(lambda p, n=n: elbo.loss(jax.random.PRNGKey(0), p, vae.model,
                                                       vae.guide, x, None, n))(vae.params))
                for n in (4, 12)]
    else:
        elbo = pyro_elbos.DReG_ELBO(num_particles=3, max_plate_nesting=1)
        loss = []
        for n in (4, 12):
            pyro.set_rng_seed(0)
            loss.append(elbo.loss(vae.model, vae.guide, x, None, n))
    np.testing.assert_allclose(loss[1], 3 * loss[0], rtol=1e-6)


def test_pathwise_estimators_refuse_discrete_guides():
    for backend in ("numpyro", "pyro"):
        vae = ppl_vae.models.build(tiny_spec("masked_laplace"), backend)
        for name in ("stl", "dreg", "iwae"):
            with pytest.raises(ValueError,
                               match=r"sites \['gate'\] are not reparameterized \(discrete"):
                ppl_vae.models.make_elbo(vae, name, example_batch=X)
        score_marked = ppl_vae.models.build(tiny_spec("gaussian_gaussian"), backend,
                                            score_function_sites=("z",))
        with pytest.raises(ValueError, match=r"\['z'\]"):
            ppl_vae.models.make_elbo(score_marked, "stl", example_batch=X)


@pytest.mark.parametrize("backend", ["numpyro", "pyro"])
def test_analytic_kl_without_a_closed_form_is_refused(backend):
    toy = QuadraticToy()
    model, guide = toy.program(backend)
    module = numpyro_elbos if backend == "numpyro" else pyro_elbos
    module.check_closed_form_kl(model, guide)  # Normal against Normal: fine

    if backend == "numpyro":
        def flat_model():
            z = numpyro.sample("z", numpyro.distributions.Cauchy(0.0, 1.0))
            numpyro.factor("f", -z**2)
    else:
        def flat_model():
            z = pyro.sample("z", pyro.distributions.Cauchy(torch.tensor(0.0), 1.0))
            pyro.factor("f", -z**2)
    with pytest.raises(ValueError, match="no closed-form KL between Normal and Cauchy"):
        module.check_closed_form_kl(flat_model, guide)
    with pytest.raises(ValueError, match="no closed-form KL"):
        gradient_variance(flat_model, guide, estimators=["analytic-kl"], num_draws=4,
                          backend=backend)


def test_neural_baseline_needs_the_data_argument():
    model, guide = TOY.program("numpyro")
    with pytest.raises(ValueError, match="first positional argument"):
        gradient_variance(model, guide, estimators=["score-nn-baseline"], num_draws=4,
                          backend="numpyro")
