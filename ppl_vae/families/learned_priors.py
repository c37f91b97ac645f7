"""Learned priors beyond factorized ones: the VampPrior and an autoregressive-flow prior.

Like every family (see :mod:`ppl_vae.families`, which lists them in ``PRIORS``), they are
frozen dataclasses that import no array library: the math runs through the backend's ``ops``,
so both backends share the parameters and the parity test covers them.

References
----------
Tomczak, J. & Welling, M. (2018). VAE with a VampPrior. AISTATS.
Germain, M., Gregor, K., Murray, I. & Larochelle, H. (2015). MADE: masked autoencoder for
distribution estimation. ICML.
Papamakarios, G., Pavlakou, T. & Murray, I. (2017). Masked autoregressive flow for density
estimation. NeurIPS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ppl_vae.families.base import check_count
from ppl_vae.networks import NetworkSpec, apply_mlp, init_mlp

PSEUDO_INPUT_NOISE = (0.05, 0.01)
"""Mean and standard deviation of the pseudo-inputs' initial values, as fractions of the data
range (Tomczak & Welling 2018's N(0.05, 0.01) for binary images)."""


@dataclass(frozen=True)
class VampPrior:
    r"""p(z) = (1/K) Σ_k q(z | u_k): the guide's own posterior at K learned pseudo-inputs.

    The pseudo-inputs ``prior.pseudo_inputs`` ``(K, *data_shape)`` live in data space and are
    clipped to the likelihood's data range before the encoder reads them (the paper's
    hardtanh; unclipped for unbounded data). They start at lo + (hi − lo) · N(0.05, 0.01)
    noise (Tomczak & Welling's initialisation for binary images; N(0.05, 0.01) itself for
    unbounded data). Starting them at K training images is not offered: ``build`` does not
    see the data. The log-density is exact, log p(z) = logsumexp_k log q(z | u_k) − log K
    (the posterior family's ``component_log_densities``), so importance-sampled log p(x)
    stays a bound; there is no closed-form KL. The encoder runs on the K pseudo-inputs each
    time the prior is built (once per batch of importance sampling).

    Attributes
    ----------
    components : K, the number of learned pseudo-inputs.
    """

    name: ClassVar[str] = "vamp"
    factorized: ClassVar[bool] = False
    uses_encoder: ClassVar[bool] = True
    components: int = 500

    def __post_init__(self) -> None:
        check_count("components", self.components)

    def log_prob_size(self, latent_dim: int) -> int:
        """Numbers one log p(z) evaluation holds per draw: (K, d) for Laplace components (a
        broadcast), an upper bound for Gaussian ones (K, by matmuls)."""
        return self.components * latent_dim

    def init_params(self, latent_dim: int, rng: np.random.Generator, *,
                    data_shape: tuple[int, ...],
                    data_range: tuple[float, float] | None) -> dict[str, np.ndarray]:
        low, high = data_range if data_range is not None else (0.0, 1.0)
        mean, std = PSEUDO_INPUT_NOISE
        noise = rng.normal(mean, std, (self.components, *data_shape))
        return {"prior.pseudo_inputs": low + (high - low) * noise}

    def distribution(self, ops: Any, params: dict, like: Any, latent_dim: int, floor: float, *,
                     encoder: Any, posterior: Any, data_range: tuple[float, float] | None
                     ) -> Any:
        """``encoder(u)``: the guide's network output h(u) for inputs ``(K, D)``;
        ``posterior``: the guide's family (its ``component_log_densities`` gives the K
        log q(z | u_k) at once)."""
        u = params["prior.pseudo_inputs"]
        u = u.reshape((u.shape[0], -1))
        if data_range is not None:
            u = ops.clip(u, *data_range)
        h = encoder(u)
        uniform = ops.full(like, (self.components,), 0.0)
        mixture = ops.dist.MixtureSameFamily(ops.dist.Categorical(logits=uniform),
                                             posterior.distributions(ops, h, floor)["z"])
        log_k = math.log(self.components)

        def log_prob(z: Any) -> Any:
            return ops.logsumexp(posterior.component_log_densities(ops, h, floor, z), -1) - log_k

        return ops.functional_distribution(
            log_prob=log_prob, sample=lambda draw: draw(mixture), mean=lambda: mixture.mean,
            variance=lambda: mixture.variance, batch_shape=(), event_shape=(latent_dim,),
            support=ops.dist.constraints.real_vector, any_sample_shape=True)


@dataclass(frozen=True)
class AutoregressiveFlowPrior:
    r"""p(z): N(0, I) pushed through ``layers`` masked autoregressive affine maps (MAF).

    Density direction, one parallel pass per layer on x (x₀ = z, the order of the variables
    reversed before every layer after the first):

    .. math:: u_i = (x_i − μ_i(x_{<i})) \, e^{−α_i(x_{<i})},\qquad
              \log p(z) = \log N(u_L; 0, I) − \sum_{l} \sum_i α^{(l)}_i .

    μ and α come from a MADE network per layer (Germain et al. 2015): ``hidden`` ReLU layers
    with masks from sequential degrees, so output i sees inputs j < i only. Sampling inverts
    each layer one dimension at a time (d passes). The raw log-scale a is bounded smoothly,
    α = A tanh(a / A) with A = ``max_log_scale`` (3): each layer scales a dimension by at most
    e^{±3}, and α ≈ a near 0. The last layer of every MADE starts at zero weights and biases,
    so the flow starts at the identity and the prior at N(0, I). Parameters are
    ``prior.flow.{layer}.{i}.weight`` / ``.bias`` (``torch.nn.Linear``'s rule otherwise).

    **Guaranteed tails.** Off the data the MADE shifts extrapolate linearly and saturated
    scales compound over layers, so log p_flow(z) can fall to −10⁷ at points a posterior
    draws; IWAE with few particles barely penalises such a draw, and the ELBO and the rate
    break. The prior is therefore the defensive mixture (Hesterberg 1995; Owen & Zhou 2000)

    .. math:: p(z) = (1 − ε)\, p_{flow}(z) + ε\, N(z; 0, I),

    evaluated exactly through logaddexp, so log p(z) ≥ log ε + log N(z; 0, I) everywhere and
    log p(z) ≥ log(1 − ε) + log p_flow(z): at ε = ``defensive`` = 0.01 the mixture costs at
    most 0.01 nats where the flow fits and caps a dead draw's penalty at log(1/ε) = 4.6
    nats beyond the standard normal's. At the identity flow p(z) = N(z; 0, I) exactly. A
    draw is the flow's with probability 1 − ε, else N(0, I)'s. ``defensive = 0`` is the
    plain flow.

    Attributes
    ----------
    layers : L, the number of masked autoregressive affine layers.
    hidden : the MADE's hidden layer sizes, a list or one integer.
    defensive : ε in [0, 1), the weight of the N(0, I) component that bounds the tails.
    """

    name: ClassVar[str] = "flow"
    factorized: ClassVar[bool] = False
    uses_encoder: ClassVar[bool] = False
    max_log_scale: ClassVar[float] = 3.0
    layers: int = 2
    hidden: Any = (128,)
    defensive: float = 0.01

    def __post_init__(self) -> None:
        hidden = (self.hidden,) if isinstance(self.hidden, int) else tuple(self.hidden)
        object.__setattr__(self, "hidden", hidden)
        if not (isinstance(self.defensive, (int, float)) and not isinstance(self.defensive, bool)
                and 0.0 <= self.defensive < 1.0):
            raise ValueError(f"defensive must be a number in [0, 1) (the weight of the N(0, I) "
                             f"component; 0 is the plain flow), got {self.defensive!r}")
        if not (isinstance(self.layers, int) and not isinstance(self.layers, bool)
                and self.layers >= 1):
            raise ValueError(f"layers must be an integer >= 1, got {self.layers!r}")
        if not hidden or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1
                                 for h in hidden):
            raise ValueError(f"hidden must be a positive integer or a non-empty list of them, "
                             f"got {self.hidden!r}")

    def log_prob_size(self, latent_dim: int) -> int:
        """Numbers one log p(z) evaluation holds per draw (every MADE's activations)."""
        return self.layers * (sum(self.hidden) + 3 * latent_dim)

    def _net(self) -> NetworkSpec:
        return NetworkSpec(hidden=self.hidden, activation="relu")

    def masks(self, latent_dim: int) -> list[np.ndarray]:
        """MADE masks ``(out, in)`` of each linear layer: degrees 1..d on the inputs,
        1 + (k mod max(d − 1, 1)) on hidden unit k, 1..d on both output halves (μ, a); a
        hidden unit sees inputs of degree ≤ its own, an output of degree i hidden units of
        degree < i."""
        d = latent_dim
        degrees = [np.arange(1, d + 1)]
        degrees += [1 + np.arange(h) % max(d - 1, 1) for h in self.hidden]
        out = np.tile(np.arange(1, d + 1), 2)
        masks = [(later[:, None] >= earlier[None, :]).astype(np.float64)
                 for earlier, later in zip(degrees[:-1], degrees[1:], strict=True)]
        return [*masks, (out[:, None] > degrees[-1][None, :]).astype(np.float64)]

    def init_params(self, latent_dim: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        params: dict[str, np.ndarray] = {}
        last = len(self.hidden)
        for layer in range(self.layers):
            prefix = f"prior.flow.{layer}"
            made = init_mlp(prefix, latent_dim, self._net(), 2 * latent_dim, rng)
            made[f"{prefix}.{last}.weight"][:] = 0.0
            made[f"{prefix}.{last}.bias"][:] = 0.0
            params |= made
        return params

    def shift_and_log_scale(self, ops: Any, params: dict, layer: int, x: Any) -> tuple[Any, Any]:
        """(μ(x_{<i}), α(x_{<i})) of one layer, each ``(..., d)``."""
        prefix = f"prior.flow.{layer}"
        masks = {f"{prefix}.{i}.weight": m for i, m in enumerate(self.masks(x.shape[-1]))}

        def param(name: str) -> Any:
            value = params[name]
            return value * ops.asarray(value, masks[name]) if name in masks else value

        shift, raw = ops.split(apply_mlp(ops, param, prefix, self._net(), x), 2)
        bound = self.max_log_scale
        return shift, bound * ops.tanh(raw / bound)

    def to_base(self, ops: Any, params: dict, z: Any) -> tuple[Any, Any]:
        """(u_L, Σ α): the density map z → u and −log |det ∂u/∂z|."""
        x, total = z, 0.0
        for layer in range(self.layers):
            if layer > 0:
                x = ops.flip(x)
            shift, log_scale = self.shift_and_log_scale(ops, params, layer, x)
            x = (x - shift) * ops.exp(-log_scale)
            total = total + ops.sum(log_scale, (-1,))
        return x, total

    def from_base(self, ops: Any, params: dict, u: Any) -> Any:
        """The inverse map u → z: each layer solved one dimension at a time."""
        position = ops.arange(u, u.shape[-1])
        y = u
        for layer in reversed(range(self.layers)):
            x = ops.full(y, tuple(y.shape), 0.0)
            for i in range(y.shape[-1]):
                shift, log_scale = self.shift_and_log_scale(ops, params, layer, x)
                x = ops.where(position == i, y * ops.exp(log_scale) + shift, x)
            y = ops.flip(x) if layer > 0 else x
        return y

    def distribution(self, ops: Any, params: dict, like: Any, latent_dim: int,
                     floor: float) -> Any:
        base = ops.dist.Normal(ops.full(like, (latent_dim,), 0.0),
                               ops.full(like, (latent_dim,), 1.0)).to_event(1)

        eps = float(self.defensive)

        def flow_log_prob(z: Any) -> Any:
            u, log_scale = self.to_base(ops, params, z)
            return base.log_prob(u) - log_scale

        def log_prob(z: Any) -> Any:
            if eps == 0.0:
                return flow_log_prob(z)
            return ops.logaddexp(math.log1p(-eps) + flow_log_prob(z),
                                 math.log(eps) + base.log_prob(z))

        def sample(draw: Any) -> Any:
            z = self.from_base(ops, params, draw(base))
            if eps == 0.0:
                return z
            defensive = draw(ops.dist.Bernoulli(probs=ops.full(like, (), eps)))
            return ops.where(defensive[..., None] > 0.5, draw(base), z)

        def mean() -> Any:
            raise ValueError("the flow prior's mean E[z] has no closed form; estimate it from "
                             "samples, prior.sample((n,)).mean(0)")

        return ops.functional_distribution(
            log_prob=log_prob, sample=sample, mean=mean, batch_shape=(),
            event_shape=(latent_dim,), support=ops.dist.constraints.real_vector,
            any_sample_shape=True)
