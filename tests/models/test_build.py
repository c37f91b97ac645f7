"""Both backends mean the same model: parity on copied weights, and SVI runs for every spec."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.handlers
import pyro
import pyro.poutine
import pytest
import torch

import ppl_vae.models
from ppl_vae.data import EIGHT_BIT_LIKELIHOODS
from ppl_vae.spec import ConditionSpec

RTOL = 1e-12  # float64 on both backends: the same arithmetic up to summation order
ZOO = ppl_vae.models.zoo_names()
B, K = 6, 3
CONDITIONED = {  # conditioned variants beyond the zoo's cvae_mnist: conv nets, masked codes
    "conditioned_conv_fixed_prior": ("conv_gaussian_dlogistic", ConditionSpec(4, "fixed")),
    "conditioned_masked_learned_laplace": ("masked_laplace", ConditionSpec(3, "learned")),
}
PARITY = ZOO + sorted(CONDITIONED)


def load(name):
    """A zoo spec, or a conditioned variant of one (:data:`CONDITIONED`)."""
    if name in CONDITIONED:
        base, condition = CONDITIONED[name]
        return ppl_vae.models.load_spec(base).replace(condition=condition)
    return ppl_vae.models.load_spec(name)


def _shrunk(net, hidden):
    """The same kind of network, narrower: conv channels 2 (and 3), masked channels 3."""
    return dataclasses.replace(net, hidden=(hidden,) if net.hidden else (),
                               channels=(2, 3)[:len(net.channels)],
                               masked_channels=3)


def small(spec):
    """The zoo spec shrunk to 12 data dims (image models: 8x8 images) and 3 latents (same
    families, same networks' kind and depth)."""
    encoder = None if spec.encoder is None else _shrunk(spec.encoder, 7)
    image = len(spec.data_shape) > 1
    data_shape = (*spec.data_shape[:-2], 8, 8) if image else (12,)
    return spec.replace(data_shape=data_shape, latent_dim=3, encoder=encoder,
                        decoder=_shrunk(spec.decoder, 5))


def data_for(spec, rng):
    if spec.likelihood.name == "bernoulli":
        return (rng.random((B, spec.data_dim)) < 0.4).astype(np.float64)
    if spec.likelihood.name in EIGHT_BIT_LIKELIHOODS:
        return rng.integers(0, 256, (B, spec.data_dim)).astype(np.float64)
    return rng.normal(size=(B, spec.data_dim))


def labels_for(spec, rng):
    """Class labels of the B datapoints for a conditioned spec (classes 0 and C − 1 both
    present), None otherwise."""
    if spec.condition is None:
        return None
    return np.concatenate([[0, spec.condition.classes - 1],
                           rng.integers(0, spec.condition.classes, B - 2)])


def as_labels(vae, c):
    return None if c is None else vae.as_index(c)


@pytest.fixture
def pair(request):
    """A float64 Pyro VAE and a NumPyro VAE with the Pyro one's weights, plus data and draws."""
    with jax.enable_x64(True):
        spec = small(load(request.param))
        rng = np.random.default_rng(0)
        pyro_vae = ppl_vae.models.build(spec, "pyro", dtype="float64", num_data=B, seed=1)
        jax_vae = ppl_vae.models.build(spec, "numpyro", dtype="float64", num_data=B, seed=2)
        params = {k: v + 0.1 * rng.normal(size=v.shape) for k, v in pyro_vae.get_params().items()}
        pyro_vae.set_params(params)
        jax_vae.set_params(params)
        x = data_for(spec, rng)
        c = labels_for(spec, rng)
        pyro.set_rng_seed(0)
        latents = {k: v.numpy() for k, v in pyro_vae.sample_latents(x, K, idx=np.arange(B),
                                                                     c=c).items()}
        yield pyro_vae, jax_vae, x, latents, c


@pytest.mark.parametrize("pair", PARITY, indirect=True)
def test_backends_agree_on_log_densities_and_elbo(pair):
    pyro_vae, jax_vae, x, latents, c = pair
    idx = np.arange(B)
    pt = pyro_vae.log_prob_terms(pyro_vae.as_tensor(x),
                                 {k: torch.as_tensor(v) for k, v in latents.items()},
                                 torch.as_tensor(idx), c=as_labels(pyro_vae, c))
    # the JAX side compiled once (VAE.compute, as evaluation runs it), not op by op
    jt = jax_vae.compute(_log_prob_terms, (), jax_vae.as_tensor(x),
                         {k: jnp.asarray(v) for k, v in latents.items()}, jnp.asarray(idx),
                         as_labels(jax_vae, c))
    terms = {k: (pt[k].detach().numpy(), np.asarray(jt[k])) for k in pt}
    for name, (a, b) in terms.items():
        assert a.shape == (K, B), name
        np.testing.assert_allclose(a, b, rtol=RTOL, err_msg=name)
    elbo = [t["log_likelihood"] + t["log_prior"] - t["log_q"] for t in (pt, jt)]
    np.testing.assert_allclose(elbo[0].detach().numpy(), np.asarray(elbo[1]), rtol=RTOL)
    assert np.all(np.isfinite(np.asarray(elbo[1])))
    if pyro_vae.spec.kl == "analytic":
        np.testing.assert_allclose(
            pyro_vae.kl(pyro_vae.as_tensor(x), c=as_labels(pyro_vae, c)).detach().numpy(),
            np.asarray(jax_vae.compute(_kl, (), jax_vae.as_tensor(x), as_labels(jax_vae, c))),
            rtol=RTOL)


def _log_prob_terms(vae, x, latents, idx, c):
    return vae.log_prob_terms(x, latents, idx, c=c)


def _kl(vae, x, c):
    return vae.kl(x, c=c)


def _trace_elbo_at(vae, x, idx, c, fixed):
    """NumPyro's Trace_ELBO of the model and guide conditioned on the draws ``fixed``."""
    return numpyro.infer.Trace_ELBO().loss(
        jax.random.PRNGKey(0), {}, numpyro.handlers.condition(vae.model, fixed),
        numpyro.handlers.condition(vae.guide, fixed), x, idx, c=c)


@pytest.mark.filterwarnings("ignore:Found non-auxiliary vars in guide")  # both sides conditioned
@pytest.mark.parametrize("pair", PARITY, indirect=True)
def test_library_trace_elbo_equals_the_summed_terms(pair):
    """The model/guide programs themselves: Trace_ELBO of each library, with the guide fixed to
    one draw, is −Σ_b (log p(x_b, z_b) − log q(z_b | x_b)) on both backends."""
    pyro_vae, jax_vae, x, latents, c = pair
    idx = np.arange(B)
    one = {k: v[0] for k, v in latents.items()}
    terms = pyro_vae.log_prob_terms(pyro_vae.as_tensor(x),
                                    {k: torch.as_tensor(v) for k, v in one.items()},
                                    torch.as_tensor(idx), c=as_labels(pyro_vae, c))
    expected = -float((terms["log_likelihood"] + terms["log_prior"] - terms["log_q"]).sum()
                      .detach())

    # Conditioning both programs on the draw: log_prob_sum still counts the fixed sites.
    fixed = {k: torch.as_tensor(v) for k, v in one.items()}
    pyro_loss = pyro.infer.Trace_ELBO().loss(pyro.poutine.condition(pyro_vae.model, fixed),
                                             pyro.poutine.condition(pyro_vae.guide, fixed),
                                             pyro_vae.as_tensor(x), torch.as_tensor(idx),
                                             c=as_labels(pyro_vae, c))
    with jax.enable_x64(True):
        jfixed = {k: jnp.asarray(v) for k, v in one.items()}
        jax_loss = jax_vae.compute(_trace_elbo_at, (), jax_vae.as_tensor(x), jnp.asarray(idx),
                                   as_labels(jax_vae, c), jfixed)  # compiled once
    np.testing.assert_allclose(pyro_loss, expected, rtol=RTOL)
    np.testing.assert_allclose(float(jax_loss), expected, rtol=RTOL)


@pytest.mark.parametrize("name", ZOO)
def test_data_plate_scales_minibatch_to_dataset_size(name):
    """With num_data = N, the minibatch log-likelihood is scaled by N / B (unbiased ELBO)."""
    spec = small(ppl_vae.models.load_spec(name))
    vae = ppl_vae.models.build(spec, "numpyro", num_data=40)
    rng = np.random.default_rng(0)
    x = jnp.asarray(data_for(spec, rng), dtype=jnp.float32)
    idx = jnp.arange(B) + 10
    seen = {}

    def trace(x, idx, c):  # traced once under jit, not run op by op: the sites are the same
        with numpyro.handlers.seed(rng_seed=0):
            tr = numpyro.handlers.trace(vae.model).get_trace(x, idx, 40, c=c)
        seen["scale"] = tr["x"]["scale"]  # a Python number, fixed when the plate is built
        return tr["data"]["value"]

    data = jax.jit(trace)(x, idx, as_labels(vae, labels_for(spec, rng)))
    np.testing.assert_allclose(seen["scale"], 40 / B)
    np.testing.assert_array_equal(data, idx)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_equal_seeds_give_equal_weights_across_backends(backend):
    ref = ppl_vae.models.build("gaussian_gaussian", "pyro", seed=3).get_params()
    other = ppl_vae.models.build("gaussian_gaussian", backend, seed=3).get_params()
    for name in ref:
        np.testing.assert_array_equal(ref[name], other[name])


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_encode_decode_sample_shapes(backend):
    vae = ppl_vae.models.build("masked_relaxed_laplace", backend)
    x = (np.random.default_rng(0).random((4, 784)) < 0.3).astype(np.float32)
    assert tuple(vae.encode(x).shape) == (4, 20)
    recon = np.asarray(vae.reconstruct(x))
    assert recon.shape == (4, 784) and np.all((recon > 0) & (recon < 1))
    assert tuple(vae.sample(5, seed=0).shape) == (5, 784)


def test_encoder_free_model_needs_num_data_and_indices():
    with pytest.raises(ValueError, match="num_data"):
        ppl_vae.models.build("latent_laplace", "pyro")
    vae = ppl_vae.models.build("latent_laplace", "numpyro", num_data=10)
    with pytest.raises(ValueError, match="pass the datapoint indices"):
        vae.encode(np.zeros((2, 784)))


def test_bad_build_arguments():
    with pytest.raises(ValueError, match="unknown backend 'tf'"):
        ppl_vae.models.build("gaussian_gaussian", "tf")
    with pytest.raises(ValueError, match="jax_enable_x64"):
        ppl_vae.models.build("gaussian_gaussian", "numpyro", dtype="float64")
    with pytest.raises(ValueError, match="score_function_sites"):
        ppl_vae.models.build("gaussian_gaussian", "pyro", score_function_sites=("gate",))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            ppl_vae.models.build("gaussian_gaussian", "pyro", device="cuda")
    vae = ppl_vae.models.build("gaussian_gaussian", "pyro")
    with pytest.raises(ValueError, match="missing"):
        vae.set_params({"decoder.0.weight": np.zeros((400, 20))})


def test_analytic_kl_estimator_refused_without_closed_form():
    vae = ppl_vae.models.build("gaussian_laplace", "pyro")
    with pytest.raises(ValueError, match="kl = 'monte-carlo'"):
        ppl_vae.models.make_elbo(vae, "analytic-kl")
    with pytest.raises(ValueError, match="unknown estimator 'bogus'"):
        ppl_vae.models.make_elbo(vae, "bogus")


ANALYTIC = [n for n in ZOO if ppl_vae.models.load_spec(n).kl == "analytic"]


@pytest.mark.parametrize("name", ANALYTIC)
def test_analytic_kl_estimator_uses_the_closed_form(name):
    """With the decoder's weights zeroed, log p(x | z) does not depend on z, so the
    analytic-KL ELBO is exact (no Monte Carlo noise) if and only if the KL is in closed form;
    a silent fallback to a Monte Carlo KL would differ draw to draw."""
    spec = small(ppl_vae.models.load_spec(name))
    rng = np.random.default_rng(0)
    x = data_for(spec, rng).astype(np.float64)
    c = labels_for(spec, rng)
    params = ppl_vae.models.build(spec, "pyro", dtype="float64").get_params()
    params = {k: (np.zeros_like(v) if k.startswith("decoder") and k.endswith("weight") else v)
              for k, v in params.items()}
    pyro_vae = ppl_vae.models.build(spec, "pyro", dtype="float64")
    pyro_vae.set_params(params)
    pc = as_labels(pyro_vae, c)
    latents = {k: torch.as_tensor(v) for k, v in pyro_vae.sample_latents(x, 1, c=c).items()}
    terms = pyro_vae.log_prob_terms(pyro_vae.as_tensor(x), latents, c=pc)
    exact = -float((terms["log_likelihood"][0] - pyro_vae.kl(pyro_vae.as_tensor(x), c=pc)).sum()
                   .detach())
    elbo, guide = ppl_vae.models.make_elbo(pyro_vae, "analytic-kl")
    losses = [elbo.loss(pyro_vae.model, guide, pyro_vae.as_tensor(x), c=pc) for _ in range(3)]
    np.testing.assert_allclose(losses, exact, rtol=1e-9)
    with jax.enable_x64(True):
        jax_vae = ppl_vae.models.build(spec, "numpyro", dtype="float64")
        jax_vae.set_params(params)
        jc = as_labels(jax_vae, c)
        elbo, guide = ppl_vae.models.make_elbo(jax_vae, "analytic-kl", example_batch=x, c=jc)
        loss = jax.jit(lambda key: elbo.loss(key, {}, jax_vae.model, guide,
                                             jax_vae.as_tensor(x), c=jc))  # compiled once
        losses = [float(loss(jax.random.PRNGKey(s))) for s in range(3)]
    np.testing.assert_allclose(losses, exact, rtol=1e-9)
