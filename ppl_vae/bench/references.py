"""The yardstick: the standard VAE's training loop written by hand in PyTorch and in JAX/optax.

Both train what ``ppl_vae.fit`` trains for a spec with a Gaussian posterior, an N(0, I) prior,
a Bernoulli likelihood and MLPs (``gaussian_gaussian``): the same initial weights
(:func:`ppl_vae.models.init_params`), the same minibatches
(:func:`ppl_vae.training.batches.epoch_order`), the same Adam (the library's defaults but the
learning rate, as ``pyro.optim.Adam`` and ``optax.adam`` use them), and the same
per-minibatch objective, the one-sample reparameterized ELBO scaled to the data set,

.. math:: \\frac{N}{B} \\sum_{b} \\big[\\log p(x_b | z_b) + \\log p(z_b) - \\log q(z_b | x_b)\\big],
          \\quad z_b = μ(x_b) + σ(x_b) ε_b,

with no Pyro or NumPyro in between: the data sit on the device, nothing checks arguments, and
the host waits once per epoch. They are what ``ppl-vae bench`` compares ``fit`` against.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ppl_vae.training.batches import epoch_order

LOG_2PI = math.log(2 * math.pi)


def check_reference_spec(spec: Any) -> None:
    """The references implement one model; refuse any other spec."""
    if (spec.posterior.name, spec.prior.name, spec.likelihood.name) != (
            "gaussian", "standard-normal", "bernoulli") or spec.encoder.activation != "relu" \
            or spec.decoder.activation != "relu":
        raise ValueError(f"the hand-written reference loops implement the Gaussian posterior, "
                         f"N(0, I) prior, Bernoulli likelihood and ReLU MLPs of "
                         f"gaussian_gaussian; spec {spec.name!r} is another model")


class TorchReference:
    """Hand-written PyTorch training loop; :meth:`run_epoch` trains one epoch.

    ``fused_adam=False`` is ``torch.optim.Adam`` as commonly written (its default, per-tensor
    implementation on CPU); ``fused_adam=True`` uses torch's fused kernel, as ``fit`` on Pyro
    does, so that the ratio against it counts only what Pyro's machinery costs.
    """

    def __init__(self, x: np.ndarray, params: dict[str, np.ndarray], *, batch_size: int,
                 learning_rate: float, seed: int, floor: float, device: str = "cpu",
                 fused_adam: bool = False) -> None:
        import torch

        self.name = "hand-written PyTorch" + (", fused Adam" if fused_adam else "")
        self.torch = torch
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.weights = {k: torch.nn.Parameter(torch.as_tensor(v, dtype=torch.float32,
                                                              device=self.device))
                        for k, v in params.items()}
        self.layers = {prefix: sorted({int(k.split(".")[1]) for k in params
                                       if k.startswith(prefix + ".")})
                       for prefix in ("encoder", "decoder")}
        self.optimizer = torch.optim.Adam(list(self.weights.values()), lr=learning_rate,
                                          fused=fused_adam or None)
        self.data = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        self.num_data, self.batch_size, self.seed, self.floor = len(x), batch_size, seed, floor

    def _mlp(self, prefix: str, h: Any) -> Any:
        F = self.torch.nn.functional
        layers = self.layers[prefix]
        for i in layers:
            w, b = self.weights[f"{prefix}.{i}.weight"], self.weights[f"{prefix}.{i}.bias"]
            h = F.linear(h, w, b)
            if i != layers[-1]:
                h = self.torch.relu(h)
        return h

    def loss(self, xb: Any) -> Any:
        """−ELBO of the minibatch, scaled by N / B."""
        torch, F = self.torch, self.torch.nn.functional
        loc, raw = self._mlp("encoder", xb).chunk(2, dim=-1)
        scale = F.softplus(raw) + self.floor
        eps = torch.randn(loc.shape, generator=self.generator, device=self.device)
        z = loc + scale * eps
        log_q = (-0.5 * eps**2 - torch.log(scale) - 0.5 * LOG_2PI).sum(-1)
        log_p = (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)
        logits = self._mlp("decoder", z)
        log_lik = -F.binary_cross_entropy_with_logits(logits, xb, reduction="none").sum(-1)
        return -(log_lik + log_p - log_q).sum() * (self.num_data / xb.shape[0])

    def run_epoch(self, epoch: int) -> float:
        """Train one epoch; returns the mean per-datapoint loss (one host sync)."""
        order = self.torch.as_tensor(epoch_order(self.seed, epoch, self.num_data,
                                                 self.batch_size), device=self.device)
        total = self.torch.zeros((), device=self.device)
        for idx in order:
            loss = self.loss(self.data[idx])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += loss.detach()
        return float(total) / (len(order) * self.num_data)


class JaxReference:
    """Hand-written JAX/optax training loop: one jitted ``lax.scan`` over an epoch's steps."""

    name = "hand-written JAX/optax"

    def __init__(self, x: np.ndarray, params: dict[str, np.ndarray], *, batch_size: int,
                 learning_rate: float, seed: int, floor: float, device: str | None = None) -> None:
        import jax
        import jax.numpy as jnp
        import optax

        from ppl_vae.models.numpyro_backend import resolve_device

        self.jax, self.jnp = jax, jnp
        self.device = resolve_device(device)
        opt = optax.adam(learning_rate)
        num_data = len(x)
        layers = {prefix: sorted({int(k.split(".")[1]) for k in params
                                  if k.startswith(prefix + ".")})
                  for prefix in ("encoder", "decoder")}

        def mlp(w: dict, prefix: str, h: Any) -> Any:
            for i in layers[prefix]:
                h = h @ w[f"{prefix}.{i}.weight"].T + w[f"{prefix}.{i}.bias"]
                if i != layers[prefix][-1]:
                    h = jax.nn.relu(h)
            return h

        def loss(w: dict, xb: Any, key: Any) -> Any:
            loc, raw = jnp.split(mlp(w, "encoder", xb), 2, axis=-1)
            scale = jax.nn.softplus(raw) + floor
            eps = jax.random.normal(key, loc.shape)
            z = loc + scale * eps
            log_q = (-0.5 * eps**2 - jnp.log(scale) - 0.5 * LOG_2PI).sum(-1)
            log_p = (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)
            logits = mlp(w, "decoder", z)
            log_lik = (xb * logits - jax.nn.softplus(logits)).sum(-1)
            return -(log_lik + log_p - log_q).sum() * (num_data / xb.shape[0])

        def epoch_fn(state: Any, data: Any, order: Any) -> Any:
            def step(carry: Any, idx: Any) -> Any:
                w, opt_state, key = carry
                key, sub = jax.random.split(key)
                value, grads = jax.value_and_grad(loss)(w, data[idx], sub)
                updates, opt_state = opt.update(grads, opt_state, w)
                return (optax.apply_updates(w, updates), opt_state, key), value

            state, values = jax.lax.scan(step, state, order)
            return state, values.sum()

        weights = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in params.items()}
        self.state = jax.device_put((weights, opt.init(weights), jax.random.PRNGKey(seed)),
                                    self.device)
        self.data = jax.device_put(jnp.asarray(x, dtype=jnp.float32), self.device)
        self._epoch = jax.jit(epoch_fn)
        self.num_data, self.batch_size, self.seed = num_data, batch_size, seed

    def run_epoch(self, epoch: int) -> float:
        """Train one epoch; returns the mean per-datapoint loss (one host sync)."""
        order = epoch_order(self.seed, epoch, self.num_data, self.batch_size)
        self.state, total = self._epoch(self.state, self.data,
                                        self.jax.device_put(order, self.device))
        return float(total) / (len(order) * self.num_data)
