"""The VampPrior and the flow prior against direct NumPy / SciPy computations, on both backends."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from scipy import special, stats

import ppl_vae.models
from ppl_vae.families import Bernoulli, GaussianPosterior, LaplacePosterior, learned_priors
from ppl_vae.models.numpyro_backend import JaxOps
from ppl_vae.models.pyro_backend import TorchOps
from ppl_vae.spec import ModelSpec, NetworkSpec

RTOL = 1e-10  # exact identities in float64 (sums of a few dozen terms)
D, LATENT, COMPONENTS = 12, 3, 5


def relu_mlp(params, prefix, layers, x):
    for i in range(layers):
        x = x @ params[f"{prefix}.{i}.weight"].T + params[f"{prefix}.{i}.bias"]
        if i < layers - 1:
            x = np.maximum(x, 0.0)
    return x


@pytest.fixture(params=["pyro", "numpyro"])
def backend(request):
    with jax.enable_x64(True):
        yield request.param


def build(spec, backend, params):
    vae = ppl_vae.models.build(spec, backend, dtype="float64")
    vae.set_params(params)
    return vae


def npy(a):
    return a.detach().numpy() if torch.is_tensor(a) else np.asarray(a)


@pytest.mark.parametrize("posterior, reference", [(GaussianPosterior(), stats.norm),
                                                   (LaplacePosterior(), stats.laplace)])
def test_vamp_prior_log_density_is_the_exact_mixture_of_the_posteriors(backend, posterior,
                                                                        reference):
    spec = ModelSpec(name="vamp", latent_dim=LATENT, data_shape=(D,), posterior=posterior,
                     prior=learned_priors.VampPrior(components=COMPONENTS),
                     likelihood=Bernoulli(), encoder=NetworkSpec(hidden=(7,)),
                     decoder=NetworkSpec(hidden=(5,)))
    rng = np.random.default_rng(0)
    params = ppl_vae.models.init_params(spec, seed=0)
    assert params["prior.pseudo_inputs"].shape == (COMPONENTS, D)
    # pseudo-inputs partly outside [0, 1], so the clipping (hardtanh) matters
    params["prior.pseudo_inputs"] = rng.uniform(-0.5, 1.5, (COMPONENTS, D))
    vae = build(spec, backend, params)
    z = rng.normal(size=(4, 6, LATENT))  # (particles, data, d)

    got = npy(vae.prior(vae.as_tensor(np.zeros((6, D))))["z"].log_prob(vae.as_tensor(z)))

    h = relu_mlp(params, "encoder", 2, np.clip(params["prior.pseudo_inputs"], 0.0, 1.0))
    loc, scale = h[:, :LATENT], np.logaddexp(0.0, h[:, LATENT:]) + spec.scale_floor
    component = reference.logpdf(z[..., None, :], loc, scale).sum(-1)  # (4, 6, K)
    expected = special.logsumexp(component, axis=-1) - np.log(COMPONENTS)
    assert got.shape == (4, 6)
    np.testing.assert_allclose(got, expected, rtol=RTOL)


@pytest.mark.parametrize("backend_ops", ["torch", "jax"])
def test_gaussian_components_stay_accurate_in_float32_for_sharp_posteriors(backend_ops):
    """500 components of σ = 0.03 spread over |μ| ≈ 1.5: 2000 draws around one datapoint (as
    importance sampling sends them) against a float64 SciPy reference. The expanded square
    without centring lost 2e-2 nats here; centred, float32 keeps 2e-4 (the broadcast: 4e-5)."""
    rng = np.random.default_rng(0)
    k, d, sigma = 500, 20, 0.03
    loc = 1.5 * rng.normal(size=(k, d))
    h = np.concatenate([loc, np.full((k, d), np.log(np.expm1(sigma - 1e-5)))], -1)
    z = loc[7] + sigma * rng.normal(size=(2000, 1, d))
    expected = special.logsumexp(stats.norm.logpdf(z[..., None, :], loc, sigma).sum(-1), -1)
    if backend_ops == "torch":
        ops, arr = TorchOps, (lambda a: torch.as_tensor(a, dtype=torch.float32))
    else:
        ops, arr = JaxOps, (lambda a: jnp.asarray(a, dtype=jnp.float32))
    got = GaussianPosterior().component_log_densities(ops, arr(h), 1e-5, arr(z))
    assert tuple(got.shape) == (2000, 1, k)
    got = special.logsumexp(npy(got).astype(np.float64), -1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-4)


def test_vamp_prior_pseudo_inputs_start_as_small_noise_in_the_data_range():
    prior = learned_priors.VampPrior(components=500)
    u = prior.init_params(20, np.random.default_rng(0), data_shape=(28, 28),
                          data_range=(0.0, 255.0))["prior.pseudo_inputs"]
    assert u.shape == (500, 28, 28)
    # N(0.05, 0.01) of the range 255: mean and sd to 3 standard errors of 392000 draws
    assert abs(u.mean() / 255 - 0.05) < 3 * 0.01 / np.sqrt(u.size)
    assert abs(u.std() / 255 - 0.01) < 1e-4


# --------------------------------------------------------------------------- flow prior

FLOW = learned_priors.AutoregressiveFlowPrior(layers=3, hidden=(7, 6), defensive=0.0)
"""The plain flow (no defensive component): its density is the change of variables alone."""


def flow_params(seed=0, scale=0.5):
    """Initial weights plus noise, so that no layer is the identity."""
    rng = np.random.default_rng(seed)
    return {k: v + scale * rng.normal(size=v.shape)
            for k, v in FLOW.init_params(LATENT, rng).items()}


def made_reference(params, layer, x):
    """μ, α of one layer in NumPy: the masked MLP and the tanh bound."""
    prefix, masks = f"prior.flow.{layer}", FLOW.masks(LATENT)
    masked = dict(params)
    for i, mask in enumerate(masks):
        masked[f"{prefix}.{i}.weight"] = params[f"{prefix}.{i}.weight"] * mask
    out = relu_mlp(masked, prefix, len(masks), x)
    bound = FLOW.max_log_scale
    return out[..., :LATENT], bound * np.tanh(out[..., LATENT:] / bound)


def flow_reference(params, z):
    x, total = z, 0.0
    for layer in range(FLOW.layers):
        x = x[..., ::-1] if layer > 0 else x
        shift, log_scale = made_reference(params, layer, x)
        x, total = (x - shift) * np.exp(-log_scale), total + log_scale.sum(-1)
    return stats.norm.logpdf(x).sum(-1) - total


@pytest.fixture(params=["torch", "jax"])
def ops(request):
    """(ops, to_array) per backend, float64."""
    if request.param == "torch":
        yield TorchOps, (lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64))
    else:
        with jax.enable_x64(True):
            yield JaxOps, (lambda a: jnp.asarray(a, dtype=jnp.float64))


def test_flow_prior_log_density_against_numpy(ops):
    ops, arr = ops
    params = flow_params()
    z = np.random.default_rng(1).normal(size=(4, 6, LATENT))
    prior = FLOW.distribution(ops, {k: arr(v) for k, v in params.items()}, arr(0.0), LATENT,
                              1e-5)
    np.testing.assert_allclose(npy(prior.log_prob(arr(z))), flow_reference(params, z),
                               rtol=RTOL)


def test_flow_prior_starts_at_the_standard_normal_exactly(ops):
    ops, arr = ops
    params = {k: arr(v) for k, v in FLOW.init_params(LATENT, np.random.default_rng(0)).items()}
    z = arr(np.random.default_rng(1).normal(size=(5, LATENT)))
    prior = FLOW.distribution(ops, params, arr(0.0), LATENT, 1e-5)
    standard = ops.dist.Normal(arr(np.zeros(LATENT)), arr(np.ones(LATENT))).to_event(1)
    np.testing.assert_array_equal(npy(prior.log_prob(z)), npy(standard.log_prob(z)))


def jacobian(ops, fn, point):
    if ops is TorchOps:
        return torch.autograd.functional.jacobian(fn, point).numpy()
    return np.asarray(jax.jacfwd(fn)(point))


def test_flow_layers_are_triangular_and_the_log_det_is_minus_the_sum_of_alpha(ops):
    """Change of variables from a numerical Jacobian (autodiff at one point): each layer's
    Jacobian is lower-triangular in its own order with diagonal e^{−α}, and the whole map's
    log |det ∂u/∂z| is −Σ α."""
    ops, arr = ops
    params = {k: arr(v) for k, v in flow_params().items()}
    z = arr(np.random.default_rng(2).normal(size=LATENT))
    for layer in range(FLOW.layers):
        def step(x, layer=layer):
            shift, log_scale = FLOW.shift_and_log_scale(ops, params, layer, x)
            return (x - shift) * ops.exp(-log_scale)

        jac = jacobian(ops, step, z)
        _, log_scale = FLOW.shift_and_log_scale(ops, params, layer, z)
        np.testing.assert_array_equal(np.triu(jac, 1), 0.0)
        np.testing.assert_allclose(np.diag(jac), np.exp(-npy(log_scale)), rtol=RTOL)
    jac = jacobian(ops, lambda x: FLOW.to_base(ops, params, x)[0], z)
    _, total = FLOW.to_base(ops, params, z)
    np.testing.assert_allclose(np.linalg.slogdet(jac)[1], -float(npy(total)), rtol=RTOL)


def test_flow_prior_samples_map_back_to_their_base_draws(ops):
    ops, arr = ops
    params = {k: arr(v) for k, v in flow_params().items()}
    prior = FLOW.distribution(ops, params, arr(0.0), LATENT, 1e-5)
    base = ops.dist.Normal(arr(np.zeros(LATENT)), arr(np.ones(LATENT))).to_event(1)
    if ops is TorchOps:
        torch.manual_seed(3)
        z = prior.sample((50,))
        torch.manual_seed(3)
        u = base.sample((50,))
    else:
        key = jax.random.PRNGKey(3)
        z = prior.sample(key, (50,))
        u = base.sample(jax.random.fold_in(key, 0), (50,))
    assert tuple(z.shape) == (50, LATENT)
    recovered, _ = FLOW.to_base(ops, params, z)
    np.testing.assert_allclose(npy(recovered), npy(u), rtol=1e-9, atol=1e-12)
    assert np.max(np.abs(npy(z) - npy(u))) > 0.1  # the flow is not the identity here


def defensive_prior(ops, arr, params, eps):
    spec = learned_priors.AutoregressiveFlowPrior(layers=FLOW.layers, hidden=FLOW.hidden,
                                                  defensive=eps)
    return spec.distribution(ops, {k: arr(v) for k, v in params.items()}, arr(0.0), LATENT,
                             1e-5)


def test_the_default_flow_prior_is_the_exact_defensive_mixture(ops):
    """log p(z) = log((1 − ε) p_flow(z) + ε N(z; 0, I)) against NumPy/SciPy, ε = 0.01."""
    ops, arr = ops
    assert learned_priors.AutoregressiveFlowPrior().defensive == 0.01
    params = flow_params()
    z = np.random.default_rng(1).normal(size=(4, 6, LATENT))
    prior = defensive_prior(ops, arr, params, 0.01)
    expected = np.logaddexp(np.log(0.99) + flow_reference(params, z),
                            np.log(0.01) + stats.norm.logpdf(z).sum(-1))
    np.testing.assert_allclose(npy(prior.log_prob(arr(z))), expected, rtol=RTOL)


def test_the_defensive_component_bounds_the_tails_for_large_weights(ops):
    """With weights 30× the initial scale, the plain flow's log-density collapses on draws
    far from the data (|z| ~ 20); the defensive mixture stays above log ε + log N(z; 0, I),
    its stated bound, on every draw (exact inequality: the logaddexp of two terms is at least
    each term; 1e-9 absorbs rounding)."""
    ops, arr = ops
    params = flow_params(seed=4, scale=15.0)
    z = 20.0 * np.random.default_rng(5).standard_normal((500, LATENT))
    plain = npy(defensive_prior(ops, arr, params, 0.0).log_prob(arr(z)))
    defended = npy(defensive_prior(ops, arr, params, 0.01).log_prob(arr(z)))
    bound = np.log(0.01) + stats.norm.logpdf(z).sum(-1)
    assert np.all(defended >= bound - 1e-9)
    assert np.all(defended >= np.log(0.99) + plain - 1e-9)
    assert np.min(plain - bound) < -100.0  # the plain flow does fall far below the bound here


def test_defensive_draws_come_from_the_standard_normal_at_rate_eps(ops):
    """With ε = 0.3, a draw is the flow's sample of its base draw with probability 0.7 and a
    fresh N(0, I) draw otherwise: the flow draws map back to the first base draws exactly;
    the fraction of the others is within 4 standard errors of 0.3 (n = 4000: se = 0.0072,
    which excludes both 0 and 0.6)."""
    ops, arr = ops
    params = flow_params()
    prior = defensive_prior(ops, arr, params, 0.3)
    base = ops.dist.Normal(arr(np.zeros(LATENT)), arr(np.ones(LATENT))).to_event(1)
    n = 4000
    if ops is TorchOps:
        torch.manual_seed(3)
        z = prior.sample((n,))
        torch.manual_seed(3)
        u = base.sample((n,))
    else:
        key = jax.random.PRNGKey(3)
        z = prior.sample(key, (n,))
        u = base.sample(jax.random.fold_in(key, 0), (n,))
    recovered, _ = FLOW.to_base(ops, {k: arr(v) for k, v in params.items()}, z)
    from_flow = np.all(np.isclose(npy(recovered), npy(u), rtol=1e-9, atol=1e-12), axis=-1)
    rate = 1.0 - from_flow.mean()
    assert abs(rate - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)


def test_flow_masks_are_autoregressive():
    """Output i (μ_i and α_i) depends on x_j only for j < i; on all of them when every hidden
    layer has at least d − 1 units."""
    for d, hidden, full in ((1, (4,), True), (2, (4, 3), True), (5, (4, 4), True),
                            (5, (4, 3), False)):
        masks = learned_priors.AutoregressiveFlowPrior(hidden=hidden).masks(d)
        connected = masks[0]
        for mask in masks[1:]:
            connected = (mask @ connected) > 0
        lower = np.tril(np.ones((d, d)), -1) > 0
        for half in (connected[:d], connected[d:]):
            assert not np.any(half & ~lower)
            assert np.array_equal(half, lower) == full
