"""Conditional VAEs: the label enters the encoder, the decoder and the class-conditional prior
as one_hot(c) says, on both backends, and every estimator carries it to the model."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.infer
import optax
import pyro
import pytest
import torch
from scipy.stats import norm

import ppl_vae.models
from ppl_vae.estimators import estimator_names
from ppl_vae.families import INV_SOFTPLUS_ONE
from ppl_vae.spec import ConditionSpec, NetworkSpec

D, LATENT, C = 12, 3, 6


def spec(prior="learned"):
    """cvae_mnist shrunk: 12 binary values, 3 latents, one hidden layer, 6 classes."""
    return ppl_vae.models.load_spec("cvae_mnist").replace(
        data_shape=(D,), latent_dim=LATENT, encoder=NetworkSpec(hidden=(7,)),
        decoder=NetworkSpec(hidden=(5,)), condition=ConditionSpec(C, prior))


def build_pair(s=None, seed=0):
    """A float64 VAE on each backend with the same (perturbed) weights."""
    s = s or spec()
    pyro_vae = ppl_vae.models.build(s, "pyro", dtype="float64", seed=seed)
    rng = np.random.default_rng(seed)
    params = {k: v + 0.3 * rng.normal(size=v.shape) for k, v in pyro_vae.get_params().items()}
    pyro_vae.set_params(params)
    with jax.enable_x64(True):
        jax_vae = ppl_vae.models.build(s, "numpyro", dtype="float64")
        jax_vae.set_params(params)
    return pyro_vae, jax_vae, params


def mlp(params, prefix, inputs):
    """The two-layer ReLU MLP of ``params`` in NumPy."""
    h = np.maximum(inputs @ params[f"{prefix}.0.weight"].T + params[f"{prefix}.0.bias"], 0.0)
    return h @ params[f"{prefix}.1.weight"].T + params[f"{prefix}.1.bias"]


def one_hot(labels):
    return np.eye(C)[labels]


def test_decoder_output_depends_on_the_label_as_the_mlp_of_z_and_one_hot():
    pyro_vae, jax_vae, params = build_pair()
    z = np.random.default_rng(1).normal(size=(4, LATENT))
    out = {}
    for label in (3, 5):
        c = np.full(4, label)
        expected = mlp(params, "decoder", np.concatenate([z, one_hot(c)], axis=1))
        got_pyro = pyro_vae.decoder_output(pyro_vae.as_tensor(z), pyro_vae.as_index(c))
        with jax.enable_x64(True):
            got_jax = np.asarray(jax_vae.decoder_output(jax_vae.as_tensor(z),
                                                        jax_vae.as_index(c)))
        np.testing.assert_allclose(got_pyro.detach().numpy(), expected, rtol=1e-12)
        np.testing.assert_allclose(got_jax, expected, rtol=1e-12)
        out[label] = expected
    # the label's own weight columns differ, so must the logits (by more than rounding)
    assert np.min(np.abs(out[3] - out[5]).max(axis=1)) > 1e-3


def test_encoder_reads_x_and_one_hot_of_the_label():
    pyro_vae, jax_vae, params = build_pair()
    rng = np.random.default_rng(2)
    x = (rng.random((5, D)) < 0.5).astype(np.float64)
    c = np.array([0, 1, 2, 5, 5])
    expected = mlp(params, "encoder", np.concatenate([x, one_hot(c)], axis=1))
    got = pyro_vae.encoder_output(pyro_vae.as_tensor(x), pyro_vae.as_index(c))
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-12)
    with jax.enable_x64(True):
        got = jax_vae.encoder_output(jax_vae.as_tensor(x), jax_vae.as_index(c))
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12)
    assert params["encoder.0.weight"].shape == (7, D + C)
    assert params["decoder.0.weight"].shape == (5, LATENT + C)


def test_class_conditional_prior_is_each_class_row_of_the_tables():
    """p(z | c) = N(μ_c, diag σ_c²), σ_c = softplus(ρ_c) + floor; the fixed variant ignores c."""
    pyro_vae, jax_vae, params = build_pair()
    assert params["prior.loc"].shape == (C, LATENT)
    initial = ppl_vae.models.init_params(spec())
    np.testing.assert_array_equal(initial["prior.loc"], np.zeros((C, LATENT)))
    np.testing.assert_array_equal(initial["prior.scale_raw"], INV_SOFTPLUS_ONE)
    c = np.array([4, 0, 4, 2])
    z = np.random.default_rng(3).normal(size=(4, LATENT))
    scale = np.log1p(np.exp(params["prior.scale_raw"][c])) + spec().scale_floor
    expected = norm.logpdf(z, params["prior.loc"][c], scale).sum(axis=1)
    got = pyro_vae.prior(pyro_vae.as_tensor(z), pyro_vae.as_index(c))["z"].log_prob(
        pyro_vae.as_tensor(z))
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-12)
    with jax.enable_x64(True):
        got = jax_vae.prior(jax_vae.as_tensor(z), jax_vae.as_index(c))["z"].log_prob(
            jax_vae.as_tensor(z))
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12)

    fixed, _, fixed_params = build_pair(spec("fixed"))
    assert fixed_params["prior.loc"].shape == (LATENT,)
    logp = [fixed.prior(fixed.as_tensor(z), fixed.as_index(np.full(4, k)))["z"].log_prob(
        fixed.as_tensor(z)).detach().numpy() for k in (0, 5)]
    np.testing.assert_array_equal(logp[0], logp[1])


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_labels_are_required_exactly_when_the_model_is_conditioned(backend):
    vae = ppl_vae.models.build(spec(), backend)
    x = np.zeros((2, D), dtype=np.float32)
    with pytest.raises(ValueError, match=r"conditioned on a class label .*pass c="):
        vae.encode(x)
    with pytest.raises(ValueError, match="conditioned on a class label"):
        vae.decode(np.zeros((2, LATENT), dtype=np.float32))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.5"):
        vae.sample(2, seed=0, c=6)
    plain = ppl_vae.models.build("gaussian_gaussian", backend)
    with pytest.raises(ValueError, match="not conditioned on a label"):
        plain.encode(np.zeros((2, 784), dtype=np.float32), c=np.array([0, 1]))


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_sample_draws_the_classes_in_turn_or_the_given_one(backend):
    """Decoder weights on z zeroed: a sample's mean is sigmoid of its class's bias column."""
    vae = ppl_vae.models.build(spec(), backend)
    params = {k: np.array(v) for k, v in vae.get_params().items()}
    params["decoder.0.weight"][:, :LATENT] = 0.0
    vae.set_params(params)
    per_class = np.asarray(vae.decode(np.zeros((C, LATENT), np.float32), c=np.arange(C)))
    assert np.abs(per_class[0] - per_class[1]).max() > 1e-3
    np.testing.assert_allclose(np.asarray(vae.sample(2 * C, seed=0)),
                               np.tile(per_class, (2, 1)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(vae.sample(3, seed=0, c=4)),
                               np.tile(per_class[4], (3, 1)), rtol=1e-6)


def _gradients(vae, estimator, x, c):
    """The gradient of the estimator's loss with respect to every model parameter."""
    idx = np.arange(len(x))
    if vae.backend == "pyro":
        elbo, guide = ppl_vae.models.make_elbo(vae, estimator, num_particles=2)
        pyro.set_rng_seed(0)
        elbo.loss_and_grads(vae.model, guide, vae.as_tensor(x), torch.as_tensor(idx), None,
                            c=vae.as_index(c))
        return {name: p.grad.numpy().copy() for name, p in vae._params.items()}
    elbo, guide = ppl_vae.models.make_elbo(vae, estimator, num_particles=2, example_batch=x,
                                           idx=jnp.asarray(idx), c=vae.as_index(c))

    args = (vae.as_tensor(x), jnp.asarray(idx))
    # as the training engine does: SVI's state brings the baselines' averages (mutable state)
    # and a neural baseline's weights
    svi = numpyro.infer.SVI(vae.model, guide, optax.sgd(0.0), elbo)
    state = svi.init(jax.random.PRNGKey(0), *args, c=vae.as_index(c))
    mutable = state.mutable_state or {}

    def loss(params):
        return elbo.loss(jax.random.PRNGKey(1), {**params, **mutable}, vae.model, guide, *args,
                         c=vae.as_index(c))

    return {k: np.asarray(v) for k, v in jax.grad(loss)(svi.get_params(state)).items()}


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("estimator", estimator_names())
def test_every_estimator_carries_the_labels_to_model_and_guide(estimator, backend):
    """Only classes 1 and 4 in the batch: the prior rows and the encoder's and decoder's
    one-hot weight columns of exactly those classes get gradient (the others' are exactly
    zero), so the labels reached every network and the prior."""
    vae = ppl_vae.models.build(spec(), backend)
    rng = np.random.default_rng(4)
    x = (rng.random((6, D)) < 0.5).astype(np.float32)
    c = np.array([1, 4, 4, 1, 1, 4])
    grads = _gradients(vae, estimator, x, c)
    present, absent = [1, 4], [0, 2, 3, 5]
    for name, columns in (("prior.loc", None), ("decoder.0.weight", LATENT),
                          ("encoder.0.weight", D)):
        g = grads[name] if columns is None else grads[name][:, columns:].T
        assert np.all(g[absent] == 0.0), name
        assert np.all(np.abs(g[present]).sum(axis=1) > 0), name
