"""Each family's densities and KLs against scipy / closed forms, on both backends."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from ppl_vae import families
from ppl_vae.models import load_spec
from ppl_vae.models.numpyro_backend import JaxOps
from ppl_vae.models.pyro_backend import TorchOps

RTOL = 1e-6  # exact identities in float64


@pytest.fixture(params=["torch", "jax"])
def backend(request):
    """(ops, to_array, to_numpy) per backend, float64."""
    if request.param == "torch":
        yield TorchOps, (lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)), \
            (lambda t: t.detach().numpy())
    else:
        with jax.enable_x64(True):
            yield JaxOps, (lambda a: jnp.asarray(a, dtype=jnp.float64)), np.asarray


RNG = np.random.default_rng(0)
H = RNG.normal(size=(5, 6))           # raw encoder output for d = 3
Z = RNG.normal(size=(5, 3))
FLOOR = 1e-5


def softplus(x):
    return np.logaddexp(0.0, x) + FLOOR


def test_gaussian_and_laplace_posteriors(backend):
    ops, arr, npy = backend
    loc, raw = H[:, :3], H[:, 3:]
    for fam, ref in ((families.GaussianPosterior(), stats.norm),
                     (families.LaplacePosterior(), stats.laplace)):
        q = fam.distributions(ops, arr(H), FLOOR)["z"]
        expected = ref.logpdf(Z, loc, softplus(raw)).sum(-1)
        np.testing.assert_allclose(npy(q.log_prob(arr(Z))), expected, rtol=RTOL)


@pytest.mark.parametrize("slab", ["gaussian", "laplace"])
def test_masked_posterior_bernoulli_gate(backend, slab):
    ops, arr, npy = backend
    fam = families.MaskedPosterior(slab=slab, gate="bernoulli")
    h = RNG.normal(size=(5, 9))
    q = fam.distributions(ops, arr(h), FLOOR)
    gate = (RNG.random((5, 3)) < 0.5).astype(float)
    expected_gate = stats.bernoulli.logpmf(gate, special.expit(h[:, 6:])).sum(-1)
    np.testing.assert_allclose(npy(q["gate"].log_prob(arr(gate))), expected_gate, rtol=RTOL)
    ref = stats.norm if slab == "gaussian" else stats.laplace
    expected_slab = ref.logpdf(Z, h[:, :3], softplus(h[:, 3:6])).sum(-1)
    np.testing.assert_allclose(npy(q["slab"].log_prob(arr(Z))), expected_slab, rtol=RTOL)
    np.testing.assert_array_equal(npy(fam.code({"gate": arr(gate), "slab": arr(Z)})), gate * Z)


def test_relaxed_gate_density(backend):
    """Binary Concrete density (Maddison et al. 2017, eq. 26) with λ = 0.5."""
    ops, arr, npy = backend
    fam = families.MaskedPosterior(gate="relaxed", temperature=0.5)
    logits = RNG.normal(size=(5, 3))
    q = fam.gate_distribution(ops, arr(logits), logits=arr(logits))
    y = RNG.uniform(0.05, 0.95, size=(5, 3))
    lam = 0.5
    log_density = (np.log(lam) + logits - (lam + 1) * (np.log(y) + np.log1p(-y))
                   - 2 * np.logaddexp(logits - lam * np.log(y), -lam * np.log1p(-y)))
    np.testing.assert_allclose(npy(q.log_prob(arr(y))), log_density.sum(-1), rtol=1e-5)


def test_priors(backend):
    ops, arr, npy = backend
    like = arr(np.zeros(()))
    rng = np.random.default_rng(1)
    np.testing.assert_allclose(
        npy(families.StandardNormal().distribution(ops, {}, like, 3, FLOOR).log_prob(arr(Z))),
        stats.norm.logpdf(Z).sum(-1), rtol=RTOL)
    np.testing.assert_allclose(
        npy(families.StandardLaplace().distribution(ops, {}, like, 3, FLOOR).log_prob(arr(Z))),
        stats.laplace.logpdf(Z).sum(-1), rtol=RTOL)
    params = {"prior.loc": rng.normal(size=3), "prior.scale_raw": rng.normal(size=3)}
    for fam, ref in ((families.LearnedNormal(), stats.norm),
                     (families.LearnedLaplace(), stats.laplace)):
        p = fam.distribution(ops, {k: arr(v) for k, v in params.items()}, like, 3, FLOOR)
        expected = ref.logpdf(Z, params["prior.loc"], softplus(params["prior.scale_raw"]))
        np.testing.assert_allclose(npy(p.log_prob(arr(Z))), expected.sum(-1), rtol=RTOL)


def test_mixture_prior(backend):
    ops, arr, npy = backend
    fam = families.MixtureOfGaussians(components=4)
    params = fam.init_params(3, np.random.default_rng(2))
    params["prior.logits"] = np.random.default_rng(3).normal(size=4)
    p = fam.distribution(ops, {k: arr(v) for k, v in params.items()}, arr(np.zeros(())), 3, FLOOR)
    log_pi = params["prior.logits"] - special.logsumexp(params["prior.logits"])
    scales = softplus(params["prior.scales_raw"])
    comp = stats.norm.logpdf(Z[:, None, :], params["prior.locs"], scales).sum(-1)
    np.testing.assert_allclose(npy(p.log_prob(arr(Z))),
                               special.logsumexp(comp + log_pi, axis=-1), rtol=RTOL)


def test_likelihoods(backend):
    ops, arr, npy = backend
    out = RNG.normal(size=(5, 4))
    x01 = (RNG.random((5, 4)) < 0.5).astype(float)
    lik = families.Bernoulli().distribution(ops, {}, arr(out), FLOOR)
    np.testing.assert_allclose(npy(lik.log_prob(arr(x01))),
                               stats.bernoulli.logpmf(x01, special.expit(out)).sum(-1), rtol=RTOL)
    x = RNG.normal(size=(5, 4))
    fixed = families.Gaussian(scale=0.3).distribution(ops, {}, arr(out), FLOOR)
    np.testing.assert_allclose(npy(fixed.log_prob(arr(x))),
                               stats.norm.logpdf(x, out, 0.3).sum(-1), rtol=RTOL)
    learned = families.Gaussian(min_scale=1e-3)
    params = {"likelihood.scale_raw": arr(np.array(-2.0))}
    sigma = np.logaddexp(0.0, -2.0) + 1e-3
    np.testing.assert_allclose(npy(learned.distribution(ops, params, arr(out), FLOOR)
                                   .log_prob(arr(x))),
                               stats.norm.logpdf(x, out, sigma).sum(-1), rtol=RTOL)


def test_fused_bernoulli_log_density_is_the_log_pmf(backend):
    """x·l − softplus(l), summed over pixels, is log Bernoulli(x; sigmoid(l)), also for logits
    far in the tails and with particle dimensions broadcast against the data."""
    ops, arr, npy = backend
    logits = np.concatenate([RNG.normal(size=(2, 5, 4)) * 3, np.full((1, 5, 4), -40.0),
                             np.full((1, 5, 4), 40.0)])
    x01 = (RNG.random((5, 4)) < 0.5).astype(float)
    fused = families.Bernoulli().log_density(ops, {}, arr(logits), FLOOR, arr(x01))
    # log sigmoid(±l) = −logaddexp(0, ∓l): exact where scipy's expit(40) rounds to 1
    log_pmf = -(x01 * np.logaddexp(0.0, -logits) + (1 - x01) * np.logaddexp(0.0, logits))
    np.testing.assert_allclose(npy(fused), log_pmf.sum(-1), rtol=RTOL)
    np.testing.assert_allclose(npy(fused)[:2],
                               stats.bernoulli.logpmf(x01, special.expit(logits[:2])).sum(-1),
                               rtol=RTOL)


def test_jax_softplus_matches_jax_nn_softplus_with_its_gradient():
    """JaxOps.softplus (max(x, 0) + log1p(e^-|x|), the faster form) has the values and the
    derivative sigmoid(x) of jax.nn.softplus, at the kink x = 0 and in the far tails too."""
    with jax.enable_x64(True):
        x = jnp.asarray(np.concatenate([np.linspace(-100.0, 100.0, 2001), [0.0, 1e-30]]))
        np.testing.assert_allclose(JaxOps.softplus(x), jax.nn.softplus(x), rtol=1e-15)
        grad = jax.vmap(jax.grad(JaxOps.softplus))(x)
        np.testing.assert_allclose(grad, jax.nn.sigmoid(x), rtol=1e-15)


def test_scale_floor_holds_for_very_negative_raw_scales(backend):
    ops, arr, npy = backend
    h = np.concatenate([np.zeros((1, 2)), np.full((1, 2), -1e4)], axis=-1)
    q = families.GaussianPosterior().distributions(ops, arr(h), FLOOR)["z"]
    np.testing.assert_allclose(npy(q.base_dist.scale), FLOOR, rtol=RTOL)


def laplace_kl_by_quadrature(m1, b1, m2, b2):
    """KL by quadrature over ±(|m| + 60 b), outside of which the mass is below e⁻⁶⁰."""
    p, q = stats.laplace(m1, b1), stats.laplace(m2, b2)
    edge = max(abs(m1), abs(m2)) + 60 * max(b1, b2)
    knots = [-edge, *sorted({m1, m2}), edge]
    return sum(integrate.quad(lambda z: p.pdf(z) * (p.logpdf(z) - q.logpdf(z)), lo, hi,
                              epsabs=1e-13, epsrel=1e-12)[0]
               for lo, hi in zip(knots[:-1], knots[1:], strict=True))


@pytest.mark.parametrize("m1, b1, m2, b2", [(0.0, 1.0, 0.0, 1.0), (0.3, 0.5, -1.0, 2.0),
                                            (2.0, 3.0, 0.5, 0.7), (-1.0, 0.2, 1.0, 0.2)])
def test_laplace_laplace_kl_closed_form(backend, m1, b1, m2, b2):
    ops, arr, npy = backend
    exact = laplace_kl_by_quadrature(m1, b1, m2, b2)
    formula = npy(families.laplace_kl(ops, arr(m1), arr(b1), arr(m2), arr(b2)))
    np.testing.assert_allclose(formula, exact, rtol=1e-7, atol=1e-10)
    q = ops.dist.Laplace(arr([m1]), arr([b1])).to_event(1)
    p = ops.dist.Laplace(arr([m2]), arr([b2])).to_event(1)
    np.testing.assert_allclose(npy(ops.kl_divergence(q, p)), exact, rtol=1e-7, atol=1e-10)


def test_gaussian_kl_closed_form(backend):
    ops, arr, npy = backend
    q = ops.dist.Normal(arr([0.3, -1.0]), arr([0.5, 2.0])).to_event(1)
    p = ops.dist.Normal(arr([0.0, 0.0]), arr([1.0, 1.0])).to_event(1)
    m, s = np.array([0.3, -1.0]), np.array([0.5, 2.0])
    exact = 0.5 * np.sum(s**2 + m**2 - 1 - 2 * np.log(s))
    np.testing.assert_allclose(npy(ops.kl_divergence(q, p)), exact, rtol=RTOL)


def test_closed_form_table_matches_what_the_backends_register():
    assert families.has_closed_form_kl(families.LaplacePosterior(), families.LearnedLaplace())
    assert not families.has_closed_form_kl(families.GaussianPosterior(), families.LearnedLaplace())
    assert not families.has_closed_form_kl(families.MaskedPosterior(), families.LearnedLaplace())


@pytest.mark.parametrize(("model", "flags"), [
    ("gaussian_gaussian", {"amortized": True, "has_density": True, "continuous": True,
                           "gated": False, "factorized": True}),
    ("masked_laplace", {"amortized": True, "has_density": True, "continuous": False,
                        "gated": True, "factorized": True}),
    ("masked_relaxed_laplace", {"continuous": True, "gated": True}),
    ("latent_laplace", {"amortized": False, "has_density": True, "continuous": True}),
    ("gaussian_mixture", {"factorized": False}),
])
def test_capability_flags_of_the_zoo(model, flags):
    spec = load_spec(model)
    found = {name: getattr(spec.prior if name == "factorized" else spec.posterior, name)
             for name in flags}
    assert found == flags


def test_point_codes_have_no_density_and_gaussian_codes_do():
    from ppl_vae.families import NoEncoderPosterior

    assert not NoEncoderPosterior(codes="point").has_density
    assert NoEncoderPosterior(codes="point").param_names == ("codes.loc",)
    assert NoEncoderPosterior().param_names == ("codes.loc", "codes.scale_raw")


def test_capability_flags_of_the_estimators():
    from ppl_vae.estimators import ESTIMATORS, get_estimator

    flags = ("reparameterized_only", "multi_particle", "score_function", "stateful",
             "closed_form_kl")
    table = {name: {f for f in flags if getattr(get_estimator(name), f)} for name in ESTIMATORS}
    assert table == {"reparam": set(), "analytic-kl": {"closed_form_kl"},
                     "score": {"score_function"},
                     "score-baseline": {"score_function", "stateful"},
                     "iwae": {"reparameterized_only", "multi_particle"},
                     "vimco": {"multi_particle"}, "stl": {"reparameterized_only"},
                     "dreg": {"reparameterized_only", "multi_particle"}}


def test_relaxed_gate_mean_is_the_expectation_not_the_median(backend):
    """E[σ((l + ε)/τ)], ε ~ Logistic: closed form at τ = 1 (a(a − 1 − l)/(a − 1)², a = eˡ),
    adaptive quadrature elsewhere; σ(l) is P(gate > ½) and differs (0.047 vs 0.065 at l = −3,
    τ = 0.5). The trapezoid rule is exact to float64 rounding: rtol 1e-12."""
    ops, as_array, as_numpy = backend
    logits = np.array([-8.0, -3.0, -0.7, 0.4, 2.5, 9.0])
    got = as_numpy(families.relaxed_bernoulli_mean(ops, as_array(logits), 1.0))
    a = np.exp(logits)
    np.testing.assert_allclose(got, a * (a - 1 - logits) / (a - 1) ** 2, rtol=1e-12)
    for tau in (0.5, 2.0):
        got = as_numpy(families.relaxed_bernoulli_mean(ops, as_array(logits), tau))
        expected = [integrate.quad(
            lambda e, lo=lo, t=tau: special.expit((lo + e) / t) * stats.logistic.pdf(e),
            -np.inf, np.inf, epsabs=1e-15, epsrel=1e-13)[0] for lo in logits]
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)
    at_minus_3 = as_numpy(families.relaxed_bernoulli_mean(ops, as_array(np.array([-3.0])), 0.5))
    assert abs(at_minus_3[0] - 0.0653) < 1e-4 and abs(special.expit(-3.0) - 0.0474) < 1e-4


@pytest.mark.parametrize("gate", ["relaxed", "bernoulli"])
def test_masked_code_mean_uses_the_gate_mean(backend, gate):
    ops, as_array, as_numpy = backend
    posterior = families.MaskedPosterior(gate=gate, temperature=0.5)
    q = posterior.distributions(ops, as_array(H), 1e-3)
    gate_logits = H[:, 4:]
    gate_mean = (as_numpy(families.relaxed_bernoulli_mean(ops, as_array(gate_logits), 0.5))
                 if gate == "relaxed" else special.expit(gate_logits))
    np.testing.assert_allclose(as_numpy(posterior.code_mean(ops, q)),
                               gate_mean * H[:, :2], rtol=1e-12)
