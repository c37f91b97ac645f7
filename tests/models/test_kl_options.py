"""β (β-VAE), KL warm-up weights and free bits: ``KLWeighted_ELBO`` on both backends.

The loss of a minibatch of B of N datapoints is
−(N/B) Σ_b mean_k log p(x_b | z_kb) + w · N · Σ_j max(λ, KL̄_j), KL̄_j the KL of latent
dimension j averaged over the minibatch and the K particles
(:func:`ppl_vae.models.objectives.kl_weighted_loss`).

Identical draws on both backends: the guides are wrapped in a handler that sets each latent
value to loc + scale · ε with one fixed NumPy array ε (standard normal or standard Laplace
noise: the reparameterization both libraries use), so the value keeps its path to the encoder
and both backends differentiate the same function of the same numbers. All in float64.
Tolerances: the backends do the same float64 arithmetic up to summation order, ~1e-15
relative per operation over a few hundred terms, so losses agree to rtol 1e-12; gradients
(through the networks and back) to rtol 1e-9 with an absolute floor of 1e-9 · max |g| for
coordinates that cancel to near zero.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
import numpyro.infer
import optax
import pyro
import pyro.distributions as pdist
import pytest
import torch
from numpyro.distributions.kl import kl_divergence as numpyro_kl
from pyro.poutine.messenger import Messenger

import ppl_vae.models
from ppl_vae.data.ppca import inverse_softplus
from ppl_vae.models import numpyro_elbos, objectives, pyro_elbos
from ppl_vae.models.linear_gaussian import linear_gaussian_spec
from ppl_vae.models.numpyro_backend import JaxOps
from ppl_vae.models.pyro_backend import TorchOps
from tests.models.test_build import as_labels, data_for, labels_for, small

N, B, K = 40, 6, 2
RTOL = 1e-12
GRAD_RTOL = 1e-9


# ----------------------------------------------------------------------------- fixed noise


class PyroNoise(Messenger):
    """Latent values loc + scale · ε (ε ``(K, B, d)`` per site; the particle plate, outside
    this handler, broadcasts the distribution to the value)."""

    def __init__(self, eps):
        super().__init__()
        self.eps = {k: torch.as_tensor(v) for k, v in eps.items()}

    def _pyro_sample(self, msg):
        if not msg["is_observed"] and msg["name"] in self.eps:
            base = msg["fn"].base_dist
            msg["value"] = base.loc + base.scale * self.eps[msg["name"]]


class NumPyroNoise(numpyro.primitives.Messenger):
    """Latent values loc + scale · ε[index]; ``particles`` runs the K particles in a Python
    loop (NumPyro's ``vectorize_particles`` accepts such a callable), setting the index."""

    def __init__(self, fn, eps):
        super().__init__(fn)
        self.eps = {k: jnp.asarray(v) for k, v in eps.items()}
        self.index = 0

    def process_message(self, msg):
        if msg["type"] == "sample" and not msg["is_observed"] and msg["name"] in self.eps:
            base = msg["fn"].base_dist
            msg["value"] = base.loc + base.scale * self.eps[msg["name"]][self.index]

    def particles(self, fn, keys):
        outs = []
        for i in range(keys.shape[0]):
            self.index = i
            outs.append(fn(keys[i]))
        self.index = 0
        return jax.tree.map(lambda *v: jnp.stack(v), *outs)


def noise_for(spec, rng, k=K):
    shape = (k, B, spec.latent_dim)
    if getattr(spec.posterior, "distribution_name", None) == "Laplace":
        return {"z": rng.laplace(size=shape)}
    return {"z": rng.normal(size=shape)}


def pyro_loss_and_grads(vae, elbo, guide, args, kwargs):
    names = sorted(vae.param_shapes())
    params = [vae.param(n) for n in names]
    loss = elbo.differentiable_loss(vae.model, guide, *args, **kwargs)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.item(), {n: (np.zeros(p.shape) if g is None else g.numpy())
                         for n, p, g in zip(names, params, grads, strict=True)}


def numpyro_loss_and_grads(vae, elbo, guide, args, kwargs, key=0):
    def f(params):
        return elbo.loss(jax.random.PRNGKey(key), params, vae.model, guide, *args, **kwargs)

    loss, grads = jax.value_and_grad(f)(vae.params)
    return float(loss), {n: np.asarray(g) for n, g in grads.items()}


def assert_grads_close(a, b):
    assert set(a) == set(b)
    for name in a:
        scale = max(np.abs(a[name]).max(), np.abs(b[name]).max(), 1e-300)
        np.testing.assert_allclose(a[name], b[name], rtol=GRAD_RTOL, atol=1e-9 * scale,
                                   err_msg=name)


# ----------------------------------------------------------------------------- (a) parity


def parity_pair(name, seed=0):
    """Float64 VAEs on both backends with the same perturbed weights; a subsampled minibatch
    (idx of B < N), labels for a conditioned spec, and the noise ε."""
    spec = small(ppl_vae.models.load_spec(name))
    rng = np.random.default_rng(seed)
    pv = ppl_vae.models.build(spec, "pyro", dtype="float64", seed=1)
    jv = ppl_vae.models.build(spec, "numpyro", dtype="float64", seed=2)
    params = {k: v + 0.3 * rng.normal(size=v.shape) for k, v in pv.get_params().items()}
    pv.set_params(params)
    jv.set_params(params)
    x = data_for(spec, rng)
    c = labels_for(spec, rng)
    idx = np.sort(rng.choice(N, B, replace=False))
    return pv, jv, x, idx, c, noise_for(spec, rng)


def kl_bar(jv, x, idx, c, eps, analytic):
    """KL̄_j per latent dimension, from the NumPyro VAE's own q(z | x) and p(z) at the noise:
    closed form, or log q − log p at z = loc + scale · ε; mean over particles and data."""
    jc = as_labels(jv, c)
    q = jv.posterior(jv.as_tensor(x), jnp.asarray(idx), c=jc)["z"].base_dist
    p = jv.prior(jv.as_tensor(x), jc)["z"].base_dist
    z = q.loc + q.scale * eps["z"]
    kl = numpyro_kl(q, p) if analytic else q.log_prob(z) - p.log_prob(z)
    return np.asarray(jnp.broadcast_to(kl, z.shape)).mean((0, 1))


PARITY = [("gaussian_gaussian", "reparam"), ("gaussian_gaussian", "analytic-kl"),
          ("cvae_mnist", "analytic-kl"), ("cvae_mnist", "reparam"),
          ("laplace_laplace", "analytic-kl")]
WEIGHTS = [2.5, 0.3]  # β ≠ 1, and a warm-up weight


@pytest.mark.parametrize("name, estimator", PARITY)
def test_backends_agree_on_beta_warm_up_and_free_bits(name, estimator):
    with jax.enable_x64(True):
        pv, jv, x, idx, c, eps = parity_pair(name)
        bar = kl_bar(jv, x, idx, c, eps, estimator == "analytic-kl")
        ordered = np.sort(bar)
        lam = float(ordered[:2].mean())  # floors the smallest of the 3 dimensions only
        assert (bar < lam).sum() == 1 and (bar > lam).sum() == 2, bar
        pargs = (pv.as_tensor(x), pv.as_index(idx), N)
        jargs = (jv.as_tensor(x), jnp.asarray(idx), N)
        losses = {}
        for free_bits in (0.0, lam):
            pelbo, pguide = ppl_vae.models.make_elbo(pv, estimator, K, kl_weighting=True,
                                                     free_bits=free_bits)
            jelbo, jguide = ppl_vae.models.make_elbo(jv, estimator, K, example_batch=x,
                                                     kl_weighting=True, free_bits=free_bits)
            noisy = NumPyroNoise(jguide, eps)
            jelbo = numpyro_elbos.KLWeighted_ELBO(K, noisy.particles, analytic=jelbo.analytic,
                                                  free_bits=jelbo.free_bits)
            for w in WEIGHTS + [1.0]:
                p_loss, p_grads = pyro_loss_and_grads(
                    pv, pelbo, PyroNoise(eps)(pguide), pargs,
                    {"c": as_labels(pv, c), "kl_weight": w})
                j_loss, j_grads = numpyro_loss_and_grads(
                    jv, jelbo, noisy, jargs, {"c": as_labels(jv, c), "kl_weight": w})
                np.testing.assert_allclose(p_loss, j_loss, rtol=RTOL)
                assert_grads_close(p_grads, j_grads)
                losses[free_bits, w] = j_loss
        for w in WEIGHTS + [1.0]:
            # the floor adds w · N · (λ − KL̄_j) for the floored dimension only; a difference
            # of losses of size ~1e3: rtol 1e-9 of the difference
            expected = w * N * np.maximum(lam - bar, 0.0).sum()
            np.testing.assert_allclose(losses[lam, w] - losses[0.0, w], expected, rtol=1e-9)
        # the weight multiplies the KL term only: loss(w) is affine in w
        slope = (losses[0.0, 2.5] - losses[0.0, 0.3]) / 2.2
        np.testing.assert_allclose(losses[0.0, 1.0] - losses[0.0, 0.3], 0.7 * slope, rtol=1e-9)


# ----------------------------------------------------------------------------- (b) by hand

D, LATENT = 6, 3


def softplus(v):
    return np.logaddexp(0.0, v)


def linear_pair():
    """Linear-Gaussian VAEs (linear encoder and decoder, N(0, I) prior, learned σ) with
    random weights on both backends, a subsampled minibatch and the noise."""
    spec = linear_gaussian_spec(D, LATENT)
    rng = np.random.default_rng(7)
    params = {"encoder.0.weight": 0.4 * rng.normal(size=(2 * LATENT, D)),
              "encoder.0.bias": np.concatenate([rng.normal(size=LATENT),
                                                inverse_softplus(np.array([0.2, 0.6, 1.1]))]),
              "decoder.0.weight": rng.normal(size=(D, LATENT)),
              "decoder.0.bias": rng.normal(size=D),
              "likelihood.scale_raw": np.array(inverse_softplus(0.7 - 1e-3))}
    vaes = []
    for backend in ("pyro", "numpyro"):
        vae = ppl_vae.models.build(spec, backend, dtype="float64")
        vae.set_params(params)
        vaes.append(vae)
    x = rng.normal(size=(B, D))
    idx = np.sort(rng.choice(N, B, replace=False))
    return vaes, params, x, idx, noise_for(spec, rng)


def by_hand(params, x, eps, floor, min_scale):
    """NumPy: per-datapoint log p(x | z) (K, B), per-dimension KL (closed form and Monte
    Carlo, (K, B, d)), z, and the decoder pieces for the gradient."""
    h = x @ params["encoder.0.weight"].T + params["encoder.0.bias"]
    loc, s = h[:, :LATENT], softplus(h[:, LATENT:]) + floor
    z = loc + s * eps                                                  # (K, B, d)
    W, b = params["decoder.0.weight"], params["decoder.0.bias"]
    sigma = softplus(params["likelihood.scale_raw"]) + min_scale
    resid = x - (z @ W.T + b)                                          # (K, B, D)
    log_lik = (-0.5 * resid**2 / sigma**2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)).sum(-1)
    analytic = np.broadcast_to(0.5 * (loc**2 + s**2 - 1) - np.log(s), z.shape)
    # log N(z; loc, s) − log N(z; 0, 1) = −log s − ε²/2 + z²/2
    monte_carlo = -np.log(s) - 0.5 * eps**2 + 0.5 * z**2
    dlik_dz = resid @ W / sigma**2                                     # ∂ log p(x | z) / ∂z
    return log_lik, {"analytic-kl": analytic, "reparam": monte_carlo}, z, loc, dlik_dz


@pytest.mark.parametrize("estimator", ["reparam", "analytic-kl"])
def test_loss_and_encoder_gradient_match_a_hand_computation(estimator):
    with jax.enable_x64(True):
        (pv, jv), params, x, idx, eps = linear_pair()
        floor, min_scale = pv.spec.scale_floor, pv.spec.likelihood.min_scale
        log_lik, kls, z, loc, dlik_dz = by_hand(params, x, eps["z"], floor, min_scale)
        kl = kls[estimator]
        bar = kl.mean((0, 1))
        lam = float(np.sort(bar)[:2].mean())
        floored = bar < lam
        assert floored.sum() == 1 and (bar > lam).sum() == 2, bar
        for w, free_bits in [(0.3, 0.0), (2.5, lam), (1.0, lam)]:
            expected = (-(N / B) * log_lik.mean(0).sum()
                        + w * N * (np.maximum(free_bits, bar) if free_bits else bar).sum())
            # ∂/∂(encoder loc bias j): the likelihood's path term, plus the KL's for the
            # dimensions above the floor only (a floored dimension is free: no KL gradient);
            # ∂KL_j/∂loc_j is loc_j in closed form and z_j for the Monte Carlo KL
            active = ~floored if free_bits else np.ones(LATENT, bool)
            dkl = loc[None] if estimator == "analytic-kl" else z
            grad = (-(N / B) * dlik_dz.mean(0).sum(0)
                    + w * N * active * np.broadcast_to(dkl, z.shape).mean((0, 1)))
            pelbo, pguide = ppl_vae.models.make_elbo(pv, estimator, K, free_bits=free_bits,
                                                     kl_weighting=True)
            jelbo, jguide = ppl_vae.models.make_elbo(jv, estimator, K, kl_weighting=True,
                                                     free_bits=free_bits)
            noisy = NumPyroNoise(jguide, eps)
            jelbo = numpyro_elbos.KLWeighted_ELBO(K, noisy.particles, analytic=jelbo.analytic,
                                                  free_bits=jelbo.free_bits)
            got = [pyro_loss_and_grads(pv, pelbo, PyroNoise(eps)(pguide),
                                       (pv.as_tensor(x), pv.as_index(idx), N),
                                       {"kl_weight": w}),
                   numpyro_loss_and_grads(jv, jelbo, noisy,
                                          (jv.as_tensor(x), jnp.asarray(idx), N),
                                          {"kl_weight": w})]
            for loss, grads in got:
                # same formulas in another order: rtol 1e-12 (loss), 1e-10 (gradient)
                np.testing.assert_allclose(loss, expected, rtol=RTOL)
                np.testing.assert_allclose(grads["encoder.0.bias"][:LATENT], grad, rtol=1e-10,
                                           atol=1e-10 * np.abs(grad).max())


# ----------------------------------------------------------------------------- (c) library


LIBRARY = [("gaussian_gaussian", "reparam", 1), ("gaussian_gaussian", "analytic-kl", 3),
           ("cvae_mnist", "analytic-kl", 1), ("cvae_mnist", "reparam", 3),
           ("masked_relaxed_laplace", "reparam", 3)]


@pytest.mark.parametrize("name, estimator, particles", LIBRARY)
def test_unit_weight_without_free_bits_is_the_library_elbo(name, estimator, particles):
    """w = 1, λ = 0 and the same draws (same torch seed, same JAX key): Trace_ELBO's
    (``reparam``) or TraceMeanField_ELBO's (``analytic-kl``) value and gradient, to rtol
    1e-12 (the same terms summed in another order)."""
    with jax.enable_x64(True):
        pv, jv, x, idx, c, _ = parity_pair(name, seed=3)
        pargs = (pv.as_tensor(x), pv.as_index(idx), N)
        jargs = (jv.as_tensor(x), jnp.asarray(idx), N)
        jargs_c = as_labels(jv, c)
        results = {}
        for kl_weighting in (True, False):
            pelbo, pguide = ppl_vae.models.make_elbo(pv, estimator, particles,
                                                     kl_weighting=kl_weighting)
            jelbo, jguide = ppl_vae.models.make_elbo(jv, estimator, particles, example_batch=x,
                                                     kl_weighting=kl_weighting, c=jargs_c)
            pyro.set_rng_seed(0)
            p = pyro_loss_and_grads(pv, pelbo, pguide, pargs, {"c": as_labels(pv, c)})
            j = numpyro_loss_and_grads(jv, jelbo, jguide, jargs, {"c": as_labels(jv, c)})
            results[kl_weighting] = p, j
            assert type(pelbo).__name__ == type(jelbo).__name__ == (
                "KLWeighted_ELBO" if kl_weighting else {
                    "reparam": "Trace_ELBO", "analytic-kl": "TraceMeanField_ELBO"}[estimator])
        for backend in (0, 1):
            (new_loss, new_grads), (lib_loss, lib_grads) = (results[True][backend],
                                                            results[False][backend])
            np.testing.assert_allclose(new_loss, lib_loss, rtol=RTOL)
            for k in lib_grads:
                np.testing.assert_allclose(new_grads[k], lib_grads[k], rtol=1e-10,
                                           atol=1e-12 * np.abs(lib_grads[k]).max())


def test_beta_on_a_vampprior_runs_and_is_the_elbo_at_unit_weight():
    # free bits are refused there (no KL per dimension), a KL weight is not
    with jax.enable_x64(True):
        pv, jv, x, idx, c, _ = parity_pair("gaussian_vampprior")
        pargs = (pv.as_tensor(x), pv.as_index(idx), N)
        elbo, guide = ppl_vae.models.make_elbo(pv, "reparam", 1, kl_weighting=True)
        lib, _ = ppl_vae.models.make_elbo(pv, "reparam", 1)
        values = []
        for e, w in ((elbo, 1.0), (lib, None), (elbo, 0.5)):
            pyro.set_rng_seed(0)
            values.append(e.loss(pv.model, guide, *pargs, **({} if w is None else
                                                             {"kl_weight": w})))
        np.testing.assert_allclose(values[0], values[1], rtol=RTOL)
        assert values[2] != values[0] and math.isfinite(values[2])


def test_kl_weight_is_traced_through_svi_update_under_scan():
    """The NumPyro engine's call, ``SVI.update(state, x, idx, c=..., kl_weight=w)`` inside a
    jitted ``lax.scan`` over the weights: each step's loss is the eager loss at its weight
    (same state, so the same key), rtol 1e-12."""
    with jax.enable_x64(True):
        _, jv, x, idx, c, _ = parity_pair("cvae_mnist")
        elbo, guide = ppl_vae.models.make_elbo(jv, "reparam", 1, example_batch=x,
                                               kl_weighting=True, free_bits=0.05)
        svi = numpyro.infer.SVI(jv.model, guide, optax.adam(1e-3), elbo, num_data=N)
        xb, ib, cb = jv.as_tensor(x), jnp.asarray(idx), as_labels(jv, c)
        state = svi.init(jax.random.PRNGKey(1), xb, ib, c=cb)
        weights = jnp.asarray([0.0, 0.3, 1.0])

        @jax.jit
        def scanned(state, weights):
            return jax.lax.scan(lambda s, w: (s, svi.update(s, xb, ib, c=cb, kl_weight=w)[1]),
                                state, weights)[1]

        losses = np.asarray(scanned(state, weights))
        key = jax.random.split(state.rng_key)[1]
        params = svi.get_params(state)
        eager = [float(elbo.loss(key, params, jv.model, guide, xb, ib, num_data=N, c=cb,
                                 kl_weight=float(w))) for w in weights]
        np.testing.assert_allclose(losses, eager, rtol=RTOL)
        assert losses[0] < losses[1] < losses[2]


def test_pyro_svi_step_passes_the_weight():
    with jax.enable_x64(True):
        pv, _, x, idx, c, _ = parity_pair("gaussian_gaussian")
    elbo, guide = ppl_vae.models.make_elbo(pv, "analytic-kl", 1, kl_weighting=True)
    args = (pv.as_tensor(x), pv.as_index(idx), N)
    pyro.set_rng_seed(0)
    expected = elbo.loss(pv.model, guide, *args, kl_weight=0.3)
    svi = pyro.infer.SVI(pv.model, guide, pyro.optim.Adam({"lr": 1e-3}), elbo)
    pyro.set_rng_seed(0)
    np.testing.assert_allclose(svi.step(*args, kl_weight=0.3), expected, rtol=RTOL)


# ----------------------------------------------------------------------------- (d) refusals


REFUSED_ESTIMATORS = [
    ("iwae", "importance-weighted bound has no separate KL term"),
    ("vimco", "importance-weighted bound has no separate KL term"),
    ("dreg", "importance-weighted bound has no separate KL term"),
    ("score", "score-function surrogate and baselines.*use 'reparam'"),
    ("score-baseline", "score-function surrogate and baselines.*use 'reparam'"),
    ("stl", "drops the score term.*use 'reparam'"),
]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_refusals_name_the_problem_and_the_fix(backend):
    def make(name, estimator="reparam", build_kwargs=None, **options):
        vae = ppl_vae.models.build(small(ppl_vae.models.load_spec(name)), backend,
                                   **(build_kwargs or {}))
        return ppl_vae.models.make_elbo(vae, estimator, 2, example_batch=np.zeros((B, 12)),
                                        **options)

    for estimator, message in REFUSED_ESTIMATORS:
        for options in ({"kl_weighting": True}, {"free_bits": 0.5}):
            with pytest.raises(ValueError, match=message):
                make("gaussian_gaussian", estimator, **options)
    with pytest.raises(ValueError, match=r"sites \['gate'\] are not reparameterized.*relaxed"):
        make("masked_laplace", kl_weighting=True)
    with pytest.raises(ValueError, match=r"sites \['z'\] are not reparameterized"):
        make("gaussian_gaussian", build_kwargs={"score_function_sites": ("z",)}, free_bits=1.0)
    for prior in ("gaussian_vampprior", "gaussian_mixture", "gaussian_flowprior"):
        with pytest.raises(ValueError, match="does not factorize over latent dimensions.*"
                                             "kl_weighting=True"):
            make(prior, free_bits=0.5, kl_weighting=True)
        make(prior, kl_weighting=True)  # β and warm-up apply
    point = ppl_vae.models.load_spec("latent_laplace")
    point = point.replace(posterior=type(point.posterior)(codes="point"))
    with pytest.raises(ValueError, match="point codes.*codes = 'gaussian'"):
        vae = ppl_vae.models.build(small(point), backend, num_data=N)
        ppl_vae.models.make_elbo(vae, "reparam", example_batch=np.zeros((B, 12)),
                                 kl_weighting=True)
    with pytest.raises(ValueError, match="kl = 'monte-carlo'; use 'reparam'"):
        make("gaussian_laplace", "analytic-kl", kl_weighting=True)
    for bad in (-0.1, float("nan"), float("inf"), "1", True, None):
        with pytest.raises(ValueError, match="free_bits must be a finite number >= 0"):
            make("gaussian_gaussian", free_bits=bad)


def test_kl_weight_must_be_a_finite_number_at_least_zero():
    with jax.enable_x64(True):
        pv, jv, x, idx, c, _ = parity_pair("gaussian_gaussian")
        elbo, guide = ppl_vae.models.make_elbo(pv, "reparam", kl_weighting=True)
        jelbo, jguide = ppl_vae.models.make_elbo(jv, "reparam", kl_weighting=True)
        for bad in (-1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="kl_weight must be a finite number >= 0"):
                elbo.loss(pv.model, guide, pv.as_tensor(x), kl_weight=bad)
            with pytest.raises(ValueError, match="kl_weight must be a finite number >= 0"):
                jelbo.loss(jax.random.PRNGKey(0), jv.params, jv.model, jguide, jv.as_tensor(x),
                           kl_weight=bad)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_the_elbos_check_the_sites_themselves(backend):
    """Used directly on a program, the ELBO classes refuse too: free bits on a prior without a
    KL per dimension, and a non-reparameterized guide site."""
    x = np.zeros((B, 12), np.float32)
    cases = [("gaussian_vampprior", 0.5, "site 'z' .* does not factorize"),
             ("masked_laplace", 0.0, r"sites \['gate'\] are not reparameterized")]
    for name, free_bits, message in cases:
        vae = ppl_vae.models.build(small(ppl_vae.models.load_spec(name)), backend)
        with pytest.raises(ValueError, match=message):
            if backend == "pyro":
                elbo = pyro_elbos.KLWeighted_ELBO(2, max_plate_nesting=1, free_bits=free_bits)
                elbo.loss(vae.model, vae.guide, vae.as_tensor(x))
            else:
                elbo = numpyro_elbos.KLWeighted_ELBO(2, free_bits=free_bits)
                elbo.loss(jax.random.PRNGKey(0), vae.params, vae.model, vae.guide,
                          vae.as_tensor(x))


def test_factorization_is_an_independent_over_an_elementwise_base():
    """:func:`objectives.elementwise_base` on both libraries' distributions: ``to_event``
    sites, also batch-expanded ones, factorize; a mixture, a multivariate base and a
    functional density (the VampPrior's and flow's) do not."""
    for ops, xp, dist in ((TorchOps, torch, pdist), (JaxOps, jnp, nd)):
        loc = xp.zeros((4, 3))
        wrappers = (dist.ExpandedDistribution,)
        factorized = [dist.Normal(loc, 1.0).to_event(1),
                      dist.Laplace(loc[0], 1.0).to_event(1).expand((2, 4)),
                      dist.Normal(loc, 1.0).to_event(2)]
        for d in factorized:
            base = objectives.elementwise_base("z", d, dist.Independent, wrappers)
            assert tuple(base.event_shape) == ()
        mixture = dist.MixtureSameFamily(dist.Categorical(logits=xp.zeros(2)),
                                         dist.Normal(xp.zeros((2, 3)), 1.0).to_event(1))
        mvn = dist.MultivariateNormal(loc, scale_tril=xp.eye(3)).to_event(1)
        functional = ops.functional_distribution(
            log_prob=lambda v: v.sum(-1), sample=None, mean=lambda m=loc: m, batch_shape=(),
            event_shape=(3,), support=dist.constraints.real_vector)
        scalar = dist.Normal(loc, 1.0)  # event shape (): one group per element
        assert objectives.elementwise_base("z", scalar, dist.Independent, wrappers) is scalar
        for d in (mixture, mvn, functional):
            with pytest.raises(ValueError, match="does not factorize over latent dimensions"):
                objectives.elementwise_base("z", d, dist.Independent, wrappers)
