"""Score-function sites on both backends: unbiased gradients against exact ones.

Toy: z ~ N(0, 1), x | z ~ N(z, 1) observed at X, guide q(z) = N(μ, σ²). The ELBO is
−log 2π − ½(μ² + σ²) − ½((X − μ)² + σ²) + ½ log(2πeσ²), so ∂/∂μ = X − 2μ, ∂/∂σ = 1/σ − 2σ.

Gate toy (discrete): q(m) = Bernoulli(sigmoid θ), p(m) = Bernoulli(0.3), log p(x | m) = c·m;
the ELBO is enumerated exactly over m ∈ {0, 1}.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
import pyro
import pyro.distributions as pd
import pytest
import torch
from scipy.special import expit

from ppl_vae.models import numpyro_backend, numpyro_elbos, pyro_backend

X, MU, SIGMA = 1.5, 0.3, 0.8
EXACT = np.array([X - 2 * MU, 1 / SIGMA - 2 * SIGMA])
THETA, C, ALPHA = 0.4, 1.7, 0.3
N = 4000
N_PYRO = 1500  # Pyro draws one gradient per Python call; the tolerance scales with 1/√N anyway
Z_TOL = 4.5  # |mean − exact| < 4.5 standard errors: a false alarm has probability < 1e-5


def exact_gate_gradient():
    """d/dθ of Σ_m q(m) [c m + log p(m) − log q(m)], by enumeration."""
    def elbo(theta):
        pi = expit(theta)
        return (pi * (C + np.log(ALPHA) - np.log(pi))
                + (1 - pi) * (np.log(1 - ALPHA) - np.log(1 - pi)))
    h = 1e-6
    return (elbo(THETA + h) - elbo(THETA - h)) / (2 * h)


def assert_unbiased(draws, exact):
    draws = np.asarray(draws, dtype=np.float64)
    mean, se = draws.mean(0), draws.std(0, ddof=1) / np.sqrt(len(draws))
    assert np.all(np.abs(mean - exact) < Z_TOL * se), (mean, exact, se)
    return draws.var(0, ddof=1)


# ----------------------------------------------------------------------------- Pyro

def pyro_toy_model():
    z = pyro.sample("z", pd.Normal(0.0, 1.0))
    pyro.sample("x", pd.Normal(z, 1.0), obs=torch.tensor(X))


def pyro_toy_guide():
    mu = pyro.param("mu", torch.tensor(MU))
    sigma = pyro.param("sigma", torch.tensor(SIGMA))
    pyro.sample("z", pd.Normal(mu, sigma))


def pyro_gate_model():
    m = pyro.sample("m", pd.Bernoulli(torch.tensor(ALPHA)))
    pyro.factor("lik", C * m)


def pyro_gate_guide():
    theta = pyro.param("theta", torch.tensor(THETA))
    pyro.sample("m", pd.Bernoulli(logits=theta))


def pyro_gradients(model, guide, names, num_draws):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    elbo = pyro.infer.Trace_ELBO()
    guide()  # register the params
    params = [pyro.param(n).unconstrained() for n in names]
    draws = []
    for _ in range(num_draws):
        loss = elbo.differentiable_loss(model, guide)
        draws.append([-g.item() for g in torch.autograd.grad(loss, params)])
    return np.array(draws)


def test_pyro_score_function_gradient_is_unbiased_and_noisier():
    score = pyro_gradients(pyro_toy_model, pyro_backend.score_function(pyro_toy_guide),
                           ["mu", "sigma"], N_PYRO)
    var_score = assert_unbiased(score, EXACT)
    var_path = assert_unbiased(pyro_gradients(pyro_toy_model, pyro_toy_guide, ["mu", "sigma"],
                                              N_PYRO), EXACT)
    assert np.all(var_score > 3 * var_path)


def test_pyro_discrete_gate_gradient():
    draws = pyro_gradients(pyro_gate_model, pyro_gate_guide, ["theta"], N_PYRO)
    assert_unbiased(draws[:, 0], exact_gate_gradient())


# ----------------------------------------------------------------------------- NumPyro

def numpyro_toy_model():
    z = numpyro.sample("z", nd.Normal(0.0, 1.0))
    numpyro.sample("x", nd.Normal(z, 1.0), obs=X)


def numpyro_toy_guide():
    mu = numpyro.param("mu", MU)
    sigma = numpyro.param("sigma", SIGMA)
    numpyro.sample("z", nd.Normal(mu, sigma))


def numpyro_gate_model():
    m = numpyro.sample("m", nd.Bernoulli(ALPHA))
    numpyro.factor("lik", C * m)


def numpyro_gate_guide():
    theta = numpyro.param("theta", THETA)
    numpyro.sample("m", nd.Bernoulli(logits=theta))


def numpyro_gradients(elbo, model, guide, params, num_draws):
    def one(key):
        grads = jax.grad(lambda p: elbo.loss(key, p, model, guide))(params)
        return jnp.stack([-grads[n] for n in params])
    keys = jax.random.split(jax.random.PRNGKey(0), num_draws)
    return np.asarray(jax.vmap(one)(keys))


def test_numpyro_score_function_gradient_is_unbiased_and_noisier():
    params = {"mu": jnp.asarray(MU), "sigma": jnp.asarray(SIGMA)}
    guide = numpyro_backend.score_function(numpyro_toy_guide)
    score = numpyro_gradients(numpyro_elbos.TraceGraph_ELBO(), numpyro_toy_model, guide, params, N)
    var_score = assert_unbiased(score, EXACT)
    path = numpyro_gradients(numpyro.infer.Trace_ELBO(), numpyro_toy_model, numpyro_toy_guide,
                             params, N)
    var_path = assert_unbiased(path, EXACT)
    assert np.all(var_score > 3 * var_path)


def test_numpyro_discrete_gate_gradient_through_make_elbo():
    from ppl_vae.estimators import Reparam

    elbo, guide = numpyro_elbos.make_elbo(Reparam(), numpyro_gate_guide)
    assert isinstance(elbo, numpyro_elbos.TraceGraph_ELBO)
    draws = numpyro_gradients(elbo, numpyro_gate_model, guide, {"theta": jnp.asarray(THETA)}, N)
    assert_unbiased(draws[:, 0], exact_gate_gradient())


def test_numpyro_biased_combinations_are_refused():
    marked = numpyro_backend.score_function(numpyro_toy_guide)
    for elbo in (numpyro.infer.Trace_ELBO(), numpyro.infer.TraceMeanField_ELBO(),
                 numpyro.infer.RenyiELBO()):
        with pytest.raises(TypeError, match="TraceGraph_ELBO"):
            numpyro_elbos.check_elbo(elbo, marked)
    with pytest.raises(TypeError, match="TraceGraph_ELBO"):
        numpyro_elbos.check_elbo(numpyro.infer.Trace_ELBO(), numpyro_gate_guide)
    numpyro_elbos.check_elbo(numpyro.infer.TraceGraph_ELBO(), marked)
    numpyro_elbos.check_elbo(numpyro.infer.Trace_ELBO(), numpyro_toy_guide)


def test_score_function_marks_only_the_named_sites():
    def guide():
        numpyro.sample("a", nd.Normal(0.0, 1.0))
        numpyro.sample("b", nd.Normal(0.0, 1.0).expand([2]).to_event(1))

    with numpyro.handlers.seed(rng_seed=0):
        tr = numpyro.handlers.trace(numpyro_backend.score_function(guide, sites=("b",))).get_trace()
    assert tr["a"]["fn"].has_rsample and not tr["b"]["fn"].has_rsample


def test_pyro_score_function_sites_on_every_zoo_family():
    """Marking works on .to_event() distributions (torch's Independent has a read-only
    has_rsample) for amortized and masked families."""
    import ppl_vae.models

    for name in ("gaussian_gaussian", "laplace_laplace", "masked_relaxed_laplace"):
        vae = ppl_vae.models.build(name, "pyro", score_function_sites=("z",) if "masked" not in
                                   name else ("gate", "slab"))
        x = vae.as_tensor((np.random.default_rng(0).random((4, 784)) < 0.4).astype(np.float32))
        tr = pyro.poutine.trace(vae.guide).get_trace(x)
        assert all(not site["fn"].has_rsample for name_, site in tr.nodes.items()
                   if site["type"] == "sample" and name_ in vae.sites)


def test_second_pyro_model_in_a_process_trains_its_own_baseline_network():
    """A stale param-store entry of the same name must not capture SVI's updates."""
    import ppl_vae.models
    from ppl_vae.estimators import VARIANTS

    x = (np.random.default_rng(0).random((16, 784)) < 0.4).astype(np.float32)
    for _ in range(2):
        vae = ppl_vae.models.build("masked_laplace", "pyro")
        elbo, guide = ppl_vae.models.make_elbo(vae, VARIANTS["score-nn-baseline"])
        svi = pyro.infer.SVI(vae.model, guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
        for _ in range(3):
            svi.step(vae.as_tensor(x))
        outputs = [v for name, v in elbo.networks.items() if name.endswith(".1.weight")]
        assert outputs
        for weight in outputs:  # zero-initialised output layer, then trained
            assert float(weight.detach().abs().sum()) > 0


def test_neural_baseline_is_one_network_with_one_init_on_both_backends():
    """Same parameter names and initial values on Pyro and NumPyro (the NumPyro guide declares
    them, the Pyro ELBO owns them), and the same b(x) for the same weights (float32
    matmuls of size 784 x 64: rtol 1e-5)."""
    import ppl_vae.models
    from ppl_vae import networks
    from ppl_vae.estimators import VARIANTS
    from ppl_vae.models.numpyro_backend import JaxOps
    from ppl_vae.models.pyro_backend import TorchOps

    x = (np.random.default_rng(0).random((16, 784)) < 0.4).astype(np.float32)
    estimator = VARIANTS["score-nn-baseline"]
    pvae = ppl_vae.models.build("masked_laplace", "pyro")
    pelbo, pguide = ppl_vae.models.make_elbo(pvae, estimator)
    pelbo.loss_and_grads(pvae.model, pguide, pvae.as_tensor(x))
    nvae = ppl_vae.models.build("masked_laplace", "numpyro")
    _, nguide = ppl_vae.models.make_elbo(nvae, estimator, example_batch=x)
    with numpyro.handlers.seed(rng_seed=0):
        tr = numpyro.handlers.trace(nguide).get_trace(jnp.asarray(x))
    nparams = {n: np.asarray(s["value"]) for n, s in tr.items()
               if s["type"] == "param" and n.startswith("baseline.")}
    pparams = {n: v.detach().numpy() for n, v in pelbo.networks.items()}
    # score-nn-baseline puts every latent site (gate and slab) on the score function
    assert sorted(pparams) == sorted(nparams) == [
        f"baseline.{site}.{layer}.{kind}" for site in ("gate", "slab") for layer in (0, 1)
        for kind in ("bias", "weight")]
    for name, value in pparams.items():
        np.testing.assert_array_equal(nparams[name], value, err_msg=name)
    trained = {n: v + 0.01 * np.random.default_rng(1).normal(size=v.shape).astype(np.float32)
               for n, v in pparams.items()}  # an output layer away from zero
    b_torch = networks.apply_baseline(TorchOps, lambda n: torch.as_tensor(trained[n]),
                                      "baseline.gate", estimator.hidden, torch.as_tensor(x))
    b_jax = networks.apply_baseline(JaxOps, lambda n: jnp.asarray(trained[n]),
                                    "baseline.gate", estimator.hidden, jnp.asarray(x))
    assert b_torch.shape == (16,) and float(b_torch.abs().max()) > 1e-3
    np.testing.assert_allclose(np.asarray(jax.device_get(b_jax)), b_torch.numpy(), rtol=1e-5)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_score_function_marking_reaches_through_every_wrapper(backend):
    """Independent, Expanded, Masked and Transformed (RelaxedBernoulli) distributions all end
    up non-reparameterized, and the relaxed-gate VAE's guide has no pathwise site left."""
    import ppl_vae.models

    lib, mark, array = ((pd, pyro_backend.mark_score_function, torch.zeros) if backend == "pyro"
                        else (nd, numpyro_backend.mark_score_function, jnp.zeros))
    def relaxed():
        return lib.RelaxedBernoulli(0.5 + array(()), logits=array(3))

    for make in (lambda: lib.Normal(array(3), 1.0).to_event(1),
                 lambda: lib.Normal(0.0, 1.0).expand([3]),
                 lambda: lib.Normal(array(3), 1.0).mask(False), relaxed,
                 lambda: relaxed().to_event(1),
                 lambda: lib.Normal(array(3), 1.0).to_event(1).mask(False)):
        d = make()
        assert d.has_rsample and not mark(d).has_rsample, type(d).__name__
    vae = ppl_vae.models.build("masked_relaxed_laplace", backend,
                               score_function_sites=("gate", "slab"))
    x = vae.as_tensor((np.random.default_rng(0).random((4, 784)) < 0.4).astype(np.float32))
    if backend == "pyro":
        sites = pyro.poutine.trace(vae.guide).get_trace(x).nodes
    else:
        sites = numpyro.handlers.trace(numpyro.handlers.seed(vae.guide, 0)).get_trace(x)
    assert [n for n in ("gate", "slab") if sites[n]["fn"].has_rsample] == []
