"""Every zoo model trains: two SVI steps of each spec as shipped on both backends, and the
learned priors under the particle-vectorized objectives (split from test_build.py, which
keeps the parity of the two backends' models)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pyro
import pytest
import torch

import ppl_vae.models
from tests.models.test_build import ZOO, B, as_labels, data_for, labels_for, small


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_model_runs_two_svi_steps(name, backend):
    spec = ppl_vae.models.load_spec(name)
    rng = np.random.default_rng(0)
    x = data_for(spec, rng).astype(np.float32)
    idx = np.arange(B)
    vae = ppl_vae.models.build(spec, backend, num_data=B)
    c = as_labels(vae, labels_for(spec, rng))
    before = vae.get_params()
    estimator = spec.training.estimator
    if backend == "pyro":
        elbo, guide = ppl_vae.models.make_elbo(vae, estimator)
        svi = pyro.infer.SVI(vae.model, guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
        losses = [svi.step(vae.as_tensor(x), torch.as_tensor(idx), B, c) for _ in range(2)]
    else:
        elbo, guide = ppl_vae.models.make_elbo(vae, estimator, example_batch=x,
                                               idx=jnp.asarray(idx), c=c)
        svi = numpyro.infer.SVI(vae.model, guide, optax.adam(1e-2), elbo)
        # init and update compiled (the update as the training engine runs it), not op by op
        state = jax.jit(svi.init, static_argnums=3)(jax.random.PRNGKey(0), vae.as_tensor(x),
                                                     jnp.asarray(idx), B, c)
        update = jax.jit(svi.update, static_argnums=3)
        losses = []
        for _ in range(2):
            state, loss = update(state, vae.as_tensor(x), jnp.asarray(idx), B, c)
            losses.append(float(loss))
        vae.set_params(svi.get_params(state))
    assert np.all(np.isfinite(losses))
    after = vae.get_params()
    assert set(after) == set(before)
    assert any(not np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("name", ["gaussian_vampprior", "gaussian_flowprior"])
def test_learned_priors_under_vectorized_particle_elbos(name, backend):
    """The VampPrior and the flow prior at the z site of a particle-vectorized objective
    (IWAE; DReG and VIMCO build the model's side the same way), whose model evaluates
    log p(z) of (K, B, d) values: one step changes the prior's parameters."""
    estimator = "iwae"
    spec = small(ppl_vae.models.load_spec(name))
    x = data_for(spec, np.random.default_rng(0)).astype(np.float32)
    vae = ppl_vae.models.build(spec, backend, num_data=B)
    before = vae.get_params()
    if backend == "pyro":
        elbo, guide = ppl_vae.models.make_elbo(vae, estimator, num_particles=4)
        svi = pyro.infer.SVI(vae.model, guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
        loss = svi.step(vae.as_tensor(x))
    else:
        elbo, guide = ppl_vae.models.make_elbo(vae, estimator, num_particles=4, example_batch=x)
        svi = numpyro.infer.SVI(vae.model, guide, optax.adam(1e-2), elbo)
        # init and update compiled (the update as the training engine runs it)
        state = jax.jit(svi.init)(jax.random.PRNGKey(0), vae.as_tensor(x))
        state, loss = jax.jit(svi.update)(state, vae.as_tensor(x))
        vae.set_params(svi.get_params(state))
    assert np.isfinite(float(loss))
    after = vae.get_params()
    assert any(not np.array_equal(before[k], after[k]) for k in before if k.startswith("prior."))
