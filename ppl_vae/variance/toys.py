r"""A Gaussian toy with closed-form gradient moments, for checking gradient estimators.

Guide q(z) = N(μ, σ²) with parameters ``mu`` and ``sigma`` (constraint: positive). Model
z ~ N(m, s²) plus a factor −(z − k)², so the loss of one draw (−ELBO) is

.. math:: L(z) = (z − k)^2 − \log N(z; m, s^2) + \log N(z; μ, σ^2),\qquad z = μ + σε,

and the exact gradient is ∂E[L]/∂μ = 2(μ − k) + (μ − m)/s². The estimators of ∂/∂μ are
polynomials in ε ~ N(0, 1), so their variances are closed forms (:func:`exact_variances`).
With the prior equal to q at the measured point (m = μ, s = σ, the default) the
score-function learning signal is exactly f(z) = (z − k)², whose classic variances are

.. math:: \mathrm{Var}_{\text{pathwise}}[∂_μ] = 4σ^2,\qquad
          \mathrm{Var}_{\text{score}}[∂_μ] = d^4/σ^2 + 14 d^2 + 15 σ^2,\quad d = μ − k.

The exact posterior is Gaussian (:func:`exact_posterior`); with q equal to it the
sticking-the-landing gradient is exactly zero.

References
----------
Roeder, Wu & Duvenaud (2017), Sticking the landing. Mohamed, Rosca, Figurnov & Mnih (2020),
Monte Carlo gradient estimation in machine learning, JMLR 21 (section 4's Gaussian examples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import logsumexp


@dataclass(frozen=True)
class QuadraticToy:
    """The toy's numbers: guide N(mu, sigma²), prior N(prior_loc, prior_scale²), target k."""

    mu: float = 0.3
    sigma: float = 0.8
    k: float = 1.2
    prior_loc: float | None = None
    prior_scale: float | None = None

    @property
    def m(self) -> float:
        return self.mu if self.prior_loc is None else self.prior_loc

    @property
    def s(self) -> float:
        return self.sigma if self.prior_scale is None else self.prior_scale

    def exact_gradient(self) -> float:
        """∂E[L]/∂μ."""
        return 2 * (self.mu - self.k) + (self.mu - self.m) / self.s**2

    def exact_variances(self) -> dict[str, float]:
        """Var of the one-draw estimators of ∂L/∂μ, by estimator name.

        reparam: 2(z − k) + (z − m)/s², so σ²(2 + 1/s²)²; stl drops the direct score term
        (z − μ)/σ² = ε/σ; analytic-kl keeps the KL exact: 4σ²; score: L(z) ε/σ with
        L = a + cε + eε², whose variance is (a² + 2c² + 6ae + 15e²)/σ².
        """
        mu, sigma, s = self.mu, self.sigma, self.s
        d, delta = mu - self.k, mu - self.m
        a = d**2 + delta**2 / (2 * s**2) + math.log(s / sigma)
        c = 2 * d * sigma + delta * sigma / s**2
        e = sigma**2 + sigma**2 / (2 * s**2) - 0.5
        return {"reparam": sigma**2 * (2 + 1 / s**2) ** 2,
                "stl": (2 * sigma + sigma / s**2 - 1 / sigma) ** 2,
                "analytic-kl": 4 * sigma**2,
                "score": (a**2 + 2 * c**2 + 6 * a * e + 15 * e**2) / sigma**2}

    def draws(self, estimator: str, eps: np.ndarray) -> np.ndarray:
        """The one-draw estimates of ∂L/∂μ at standard normal ``eps`` (for quadrature)."""
        mu, sigma, s, m, k = self.mu, self.sigma, self.s, self.m, self.k
        z = mu + sigma * eps
        pathwise = 2 * (z - k) + (z - m) / s**2
        if estimator == "reparam":
            return pathwise
        if estimator == "stl":
            return pathwise - eps / sigma
        if estimator == "analytic-kl":
            return 2 * (z - k) + (mu - m) / s**2
        if estimator == "score":
            loss = ((z - k) ** 2 + math.log(s / sigma) + (z - m) ** 2 / (2 * s**2)
                    - eps**2 / 2)
            return loss * eps / sigma
        raise ValueError(f"no closed form for estimator {estimator!r}")

    def exact_posterior(self) -> tuple[float, float]:
        """Loc and scale of p(z | ·) ∝ N(z; m, s²) exp(−(z − k)²)."""
        precision = 1 / self.s**2 + 2
        return (self.m / self.s**2 + 2 * self.k) / precision, 1 / math.sqrt(precision)

    def iwae_gradient(self, num_particles: int, nodes: int = 48) -> float:
        """∂/∂μ of −E log (1/K) Σ_k w_k by Gauss–Hermite quadrature over K ≤ 3 draws.

        The reparameterized total derivative of log w_k is −(z_k − m)/s² − 2(z_k − k) (the
        log q terms cancel), weighted by the normalized weights w̃_k.
        """
        if not 1 <= num_particles <= 3:
            raise ValueError("quadrature is exact enough only for 1 to 3 particles")
        x, w = np.polynomial.hermite_e.hermegauss(nodes)
        w = w / w.sum()
        grids = np.meshgrid(*([x] * num_particles), indexing="ij")
        weight = np.prod(np.meshgrid(*([w] * num_particles), indexing="ij"), axis=0)
        eps = np.stack(grids, axis=-1)
        z = self.mu + self.sigma * eps
        log_w = (-(z - self.m) ** 2 / (2 * self.s**2) - math.log(self.s) - (z - self.k) ** 2
                 + eps**2 / 2 + math.log(self.sigma))
        tilde = np.exp(log_w - logsumexp(log_w, axis=-1, keepdims=True))
        grad = np.sum(tilde * ((z - self.m) / self.s**2 + 2 * (z - self.k)), axis=-1)
        return float(np.sum(weight * grad))

    def program(self, backend: str, dtype: str = "float64") -> tuple[Any, Any]:
        """(model, guide) for ``backend``; the Pyro guide's parameters are (re)set in Pyro's
        param store, the NumPyro guide's are initialised by ``numpyro.param``."""
        if backend == "pyro":
            return self._pyro(dtype)
        if backend == "numpyro":
            return self._numpyro()
        raise ValueError(f"unknown backend {backend!r}; choose 'pyro' or 'numpyro'")

    def _pyro(self, dtype: str) -> tuple[Any, Any]:
        import pyro
        import pyro.distributions as dist
        import torch
        from torch.distributions import constraints

        dt = getattr(torch, dtype)
        store = pyro.get_param_store()
        for name in ("mu", "sigma"):
            if name in store:
                del store[name]
        pyro.param("mu", torch.tensor(self.mu, dtype=dt))
        pyro.param("sigma", torch.tensor(self.sigma, dtype=dt), constraint=constraints.positive)
        m, s, k = (torch.tensor(v, dtype=dt) for v in (self.m, self.s, self.k))

        def model() -> None:
            z = pyro.sample("z", dist.Normal(m, s))
            pyro.factor("f", -((z - k) ** 2))

        def guide() -> None:
            pyro.sample("z", dist.Normal(pyro.param("mu"), pyro.param("sigma")))

        return model, guide

    def _numpyro(self) -> tuple[Any, Any]:
        import numpyro
        import numpyro.distributions as dist
        from numpyro.distributions import constraints

        m, s, k = self.m, self.s, self.k

        def model() -> None:
            z = numpyro.sample("z", dist.Normal(m, s))
            numpyro.factor("f", -((z - k) ** 2))

        def guide() -> None:
            loc = numpyro.param("mu", self.mu)
            scale = numpyro.param("sigma", self.sigma, constraint=constraints.positive)
            numpyro.sample("z", dist.Normal(loc, scale))

        return model, guide
