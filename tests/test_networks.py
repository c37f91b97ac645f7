"""Conv, transposed-conv and masked-conv networks: the same outputs on both backends on the
same weights, the geometry the specs promise, and causal masks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import ppl_vae.models
from ppl_vae import networks
from ppl_vae.families import Bernoulli
from ppl_vae.models.numpyro_backend import JaxOps
from ppl_vae.models.pyro_backend import TorchOps
from ppl_vae.spec import NetworkSpec, SpecError


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def both(fn, *arrays):
    """``fn(ops, *arrays)`` on torch and on JAX, as NumPy."""
    return (fn(TorchOps, *map(torch.as_tensor, arrays)).detach().numpy(),
            np.asarray(fn(JaxOps, *map(jnp.asarray, arrays))))


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (4, 2, 1), (3, 2, 1), (5, 2, 2)])
def test_conv_ops_agree_across_backends(kernel, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 9, 9))
    w, b = rng.normal(size=(4, 3, kernel, kernel)), rng.normal(size=4)
    a, j = both(lambda ops, *t: ops.conv2d(*t, stride, padding), x, w, b)
    np.testing.assert_allclose(a, j, rtol=1e-12, atol=1e-12)
    for output_padding in range(stride):
        wt = rng.normal(size=(3, 5, kernel, kernel))  # (in, out, kh, kw)
        a, j = both(lambda ops, *t, op=output_padding:
                    ops.conv_transpose2d(*t, stride, padding, op), x, wt, b[:1].repeat(5))
        np.testing.assert_allclose(a, j, rtol=1e-12, atol=1e-12)
        assert a.shape[-1] == (9 - 1) * stride - 2 * padding + kernel + output_padding


@pytest.mark.parametrize("name,data_shape", [("conv_gaussian_dlogistic", (1, 28, 28)),
                                             ("conv_gaussian_dlogistic", (3, 32, 32)),
                                             ("conv_patches_categorical", (3, 16, 16))])
def test_conv_encoder_and_decoder_agree_across_backends(name, data_shape):
    """Sized for 28x28x1 and 32x32x3: same initial weights for one seed on both backends,
    the same encoder and decoder outputs on them (float64)."""
    spec = ppl_vae.models.load_spec(name).replace(data_shape=data_shape)
    pyro_vae = ppl_vae.models.build(spec, "pyro", dtype="float64", seed=3)
    jax_vae = ppl_vae.models.build(spec, "numpyro", dtype="float64", seed=3)
    for key, value in pyro_vae.get_params().items():
        np.testing.assert_array_equal(value, jax_vae.get_params()[key])
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (3, spec.data_dim)).astype(np.float64)
    z = rng.normal(size=(2, 3, spec.latent_dim))
    h = [np.asarray(v.encoder_output(v.as_tensor(x)).detach() if v is pyro_vae
                    else v.encoder_output(v.as_tensor(x))) for v in (pyro_vae, jax_vae)]
    assert h[0].shape == (3, 2 * spec.latent_dim)
    np.testing.assert_allclose(h[0], h[1], rtol=1e-10, atol=1e-12)
    out = [np.asarray(v.decoder_output(v.as_tensor(z)).detach() if v is pyro_vae
                      else v.decoder_output(v.as_tensor(z))) for v in (pyro_vae, jax_vae)]
    assert out[0].shape == (2, 3, spec.data_dim * spec.likelihood.outputs_per_value)
    np.testing.assert_allclose(out[0], out[1], rtol=1e-10, atol=1e-12)


def test_decoder_output_is_value_major():
    """Output (n, d·P + p) is transposed-conv channel c·P + p at pixel (h, w) of value
    d = (c, h, w): the family's (…, D, P) reading."""
    net = NetworkSpec(hidden=(), kind="conv", channels=(2,), kernel=4, stride=2)
    rng = np.random.default_rng(2)
    params = networks.init_decoder(net, 3, (3, 4, 4), 5, rng)
    z = torch.as_tensor(rng.normal(size=(1, 3)))
    out = networks.apply_decoder(TorchOps, lambda k: torch.as_tensor(params[k]), net,
                                 (3, 4, 4), 5, z)
    h = torch.relu(torch.nn.functional.linear(z, torch.as_tensor(params["decoder.0.weight"]),
                                              torch.as_tensor(params["decoder.0.bias"])))
    maps = torch.nn.functional.conv_transpose2d(
        h.reshape(1, 2, 2, 2), torch.as_tensor(params["decoder.deconv.0.weight"]),
        torch.as_tensor(params["decoder.deconv.0.bias"]), stride=2, padding=1)
    assert maps.shape == (1, 15, 4, 4)
    table = out.reshape(1, 3, 4, 4, 5)
    for c, p, i, j in [(0, 0, 0, 0), (1, 3, 2, 1), (2, 4, 3, 3)]:
        assert table[0, c, i, j, p] == maps[0, c * 5 + p, i, j]


def test_conv_geometry_errors_are_spec_errors():
    spec = ppl_vae.models.load_spec("conv_gaussian_dlogistic")
    with pytest.raises(SpecError, match=r"\[decoder\] 4 convolutions .* below 1 pixel"):
        spec.replace(data_shape=(1, 8, 8),
                     decoder=dataclasses.replace(spec.decoder, channels=(8, 8, 8, 8)))
    with pytest.raises(SpecError, match="data_shape"):
        spec.replace(data_shape=(784,))
    with pytest.raises(ValueError, match="needs channels"):
        NetworkSpec(kind="conv")
    with pytest.raises(ValueError, match="kind must be one of"):
        NetworkSpec(kind="resnet")
    with pytest.raises(SpecError, match="decoders only"):
        spec.replace(encoder=dataclasses.replace(spec.encoder, masked_layers=2))
    with pytest.raises(SpecError, match="bernoulli likelihood only"):
        spec.replace(decoder=dataclasses.replace(spec.decoder, masked_layers=2))


# --------------------------------------------------------------------------- masked convs

MASKED = NetworkSpec(hidden=(), masked_layers=3, masked_kernel=3, masked_channels=4,
                     activation="tanh")
SHAPE = (5, 6)


def masked_params(seed=0):
    rng = np.random.default_rng(seed)
    return networks.init_masked(MASKED, 1, rng)


def outputs(ops, params, cond, x):
    return networks.masked_outputs(ops, lambda k: params[k], MASKED, SHAPE, cond, x)


def test_masked_outputs_are_causal_on_both_backends():
    """d output_i / d x_j is exactly 0 for j at or after i in raster order, and not 0 for
    the left and upper neighbours of i (the window is real)."""
    rng = np.random.default_rng(3)
    params = masked_params()
    cond = rng.normal(size=(30,))
    x = (rng.random(30) < 0.5).astype(np.float64)
    tp = {k: torch.as_tensor(v) for k, v in params.items()}
    jac_t = torch.autograd.functional.jacobian(
        lambda v: outputs(TorchOps, tp, torch.as_tensor(cond), v), torch.as_tensor(x)).numpy()
    jp = {k: jnp.asarray(v) for k, v in params.items()}
    jac_j = np.asarray(jax.jacobian(lambda v: outputs(JaxOps, jp, jnp.asarray(cond), v))(
        jnp.asarray(x)))
    for jac in (jac_t, jac_j):
        assert np.all(jac[np.triu_indices(30)] == 0.0)  # j >= i
        width = SHAPE[1]
        i = 2 * width + 3
        assert jac[i, i - 1] != 0 and jac[i, i - width] != 0
    np.testing.assert_allclose(jac_t, jac_j, rtol=1e-10, atol=1e-14)


def sequential_log_likelihood(ops, to, params, cond, x):
    """Σ_i log p(x_i | z, x_{<i}), one conditional at a time: output i computed from a canvas
    holding only x_{<i}."""
    total = 0.0
    for i in range(x.shape[-1]):
        canvas = x * to((np.arange(x.shape[-1]) < i).astype(np.float64))
        logits = outputs(ops, params, cond, canvas)[..., i]
        total = total + (x[..., i] * logits - ops.softplus(logits))
    return total


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_parallel_log_likelihood_equals_sum_of_sequential_conditionals(backend):
    rng = np.random.default_rng(4)
    params = masked_params(1)
    cond = rng.normal(size=(2, 3, 30))
    x = (rng.random((3, 30)) < 0.5).astype(np.float64)
    ops, to = (TorchOps, torch.as_tensor) if backend == "pyro" else (JaxOps, jnp.asarray)
    p = {k: to(v) for k, v in params.items()}

    def pixel(out):
        return Bernoulli().distribution(ops, {}, out, 1e-5)

    d = networks.local_autoregressive(ops, lambda k: p[k], MASKED, SHAPE, pixel, to(cond))
    parallel = np.asarray(d.log_prob(to(x)))
    assert parallel.shape == (2, 3)
    sequential = np.asarray(sequential_log_likelihood(ops, to, p, to(cond), to(x)))
    np.testing.assert_allclose(parallel, sequential, rtol=1e-12)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_pixel_by_pixel_sampling_follows_the_conditionals(backend):
    """A one-layer decoder whose pixel i is ~surely 1 − x_{left}: only a sampler that fills
    the image in raster order, each pixel from its conditional, draws 1, 0, 1, 0, ... in
    every row (column 0 sees zero padding, so it is 1)."""
    net = NetworkSpec(hidden=(), masked_layers=1, masked_kernel=3, masked_channels=1,
                      activation="relu")
    params = {k: np.zeros_like(v) for k, v in
              networks.init_masked(net, 1, np.random.default_rng(0)).items()}
    params["decoder.masked.0.weight"][0, 0, 1, 0] = 100.0  # the left neighbour
    params["decoder.out.weight"][:] = -1.0
    ops, to = (TorchOps, torch.as_tensor) if backend == "pyro" else (JaxOps, jnp.asarray)
    p = {k: to(v) for k, v in params.items()}

    def pixel(out):
        return Bernoulli().distribution(ops, {}, out, 1e-5)

    cond = to(np.full((4, 30), 50.0))
    d = networks.local_autoregressive(ops, lambda k: p[k], net, SHAPE, pixel, cond)
    draws = d.sample() if backend == "pyro" else d.sample(jax.random.PRNGKey(0))
    expected = np.tile((np.arange(SHAPE[1]) + 1) % 2, (4, SHAPE[0]))
    np.testing.assert_array_equal(np.asarray(draws), expected)


def test_local_autoregressive_vae_agrees_across_backends_and_has_no_mean():
    spec = ppl_vae.models.load_spec("vlae_local").replace(
        data_shape=(6, 6), latent_dim=3,
        decoder=dataclasses.replace(MASKED, hidden=(5,)))
    pyro_vae = ppl_vae.models.build(spec, "pyro", dtype="float64", seed=1)
    jax_vae = ppl_vae.models.build(spec, "numpyro", dtype="float64", seed=1)
    assert not pyro_vae.has_decoder_mean
    assert set(networks.masked_param_names(spec.decoder)) <= set(pyro_vae.get_params())
    rng = np.random.default_rng(5)
    x = (rng.random((4, 36)) < 0.5).astype(np.float64)
    z = rng.normal(size=(2, 4, 3))
    a = pyro_vae.likelihood(torch.as_tensor(z)).log_prob(torch.as_tensor(x)).detach().numpy()
    b = np.asarray(jax_vae.likelihood(jnp.asarray(z)).log_prob(jnp.asarray(x)))
    np.testing.assert_allclose(a, b, rtol=1e-12)
    with pytest.raises(ValueError, match="pixel by pixel"):
        pyro_vae.decode(z[0])
    # what a run shows instead of means: x ~ p(x | z) drawn by the decoder's own sampler,
    # binary pixels, the same for the same seed
    for vae in (pyro_vae, jax_vae):
        draws = np.asarray(vae.sample(5, seed=3))
        assert draws.shape == (5, 36) and set(np.unique(draws)) == {0.0, 1.0}
        np.testing.assert_array_equal(draws, np.asarray(vae.sample(5, seed=3)))
        shown = np.asarray(vae.decode_or_draw(z[0], seed=1))
        assert shown.shape == (4, 36) and set(np.unique(shown)) <= {0.0, 1.0}
        np.testing.assert_array_equal(shown, np.asarray(vae.decode_or_draw(z[0], seed=1)))
