"""Seconds per epoch of training: ppl_vae.fit (Pyro, NumPyro) against hand-written loops.

The 784-400-20 MLP VAE (``gaussian_gaussian``: Gaussian posterior, N(0, I) prior, Bernoulli
pixels) on MNIST-5k (4000 training images, batch 128, 31 steps an epoch), one-sample
reparameterized ELBO (``Trace_ELBO``), Adam with learning rate 1e-3. All four loops start from
``ppl_vae.models.init_params(spec, seed=0)`` and visit the same minibatches
(``ppl_vae.training.batches.epoch_order``); the hand-written ones keep the data on the device,
take one host sync per epoch and compute the same per-minibatch objective,
(N / B) Σ_b [log p(x_b | z_b) + log p(z_b) − log q(z_b | x_b)]. No validation, no checkpoints.

    python benchmarks/bench_training.py [--epochs 12 --warmup 2] [--threads 1]

Prints the median seconds per epoch after the warm-up epochs, and ratios from this one run.
``--threads N`` sets torch's CPU threads to N (and with N = 1 turns off XLA's multi-threaded
Eigen kernels); the default is each library's own choice. On a machine shared with other work,
one thread keeps torch from oversubscribing the cores, which otherwise slows it several-fold.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import ppl_vae.models  # noqa: E402
from ppl_vae.data import prepare  # noqa: E402
from ppl_vae.reports import machine_description  # noqa: E402
from ppl_vae.training import fit  # noqa: E402
from ppl_vae.training.batches import epoch_order  # noqa: E402

SEED = 0
BATCH = 128
LEARNING_RATE = 1e-3
FLOOR = 1e-5  # the spec's scale_floor: σ = softplus(raw) + floor


def fit_epoch_seconds(backend: str, x: np.ndarray, epochs: int) -> np.ndarray:
    """Epoch times of ``ppl_vae.fit``, from the wall time of each epoch's last step."""
    vae = ppl_vae.models.build("gaussian_gaussian", backend, seed=SEED)
    result = fit(vae, x, num_epochs=epochs, batch_size=BATCH, estimator="reparam",
                 learning_rate=LEARNING_RATE, seed=SEED, progress=False)
    ends = result.history.groupby("epoch")["wall_time"].max().to_numpy()
    return np.diff(np.concatenate([[0.0], ends]))


def torch_epoch_seconds(x: np.ndarray, params: dict, epochs: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(SEED)
    weights = {k: torch.nn.Parameter(torch.as_tensor(v, dtype=torch.float32))
               for k, v in params.items()}
    opt = torch.optim.Adam(weights.values(), lr=LEARNING_RATE)
    data = torch.as_tensor(x)
    num = len(x)
    log2pi = float(np.log(2 * np.pi))

    def mlp(prefix: str, h: torch.Tensor) -> torch.Tensor:
        h = torch.relu(F.linear(h, weights[f"{prefix}.0.weight"], weights[f"{prefix}.0.bias"]))
        return F.linear(h, weights[f"{prefix}.1.weight"], weights[f"{prefix}.1.bias"])

    def neg_elbo(xb: torch.Tensor) -> torch.Tensor:
        loc, raw = mlp("encoder", xb).chunk(2, dim=-1)
        scale = F.softplus(raw) + FLOOR
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        log_q = (-0.5 * eps**2 - torch.log(scale) - 0.5 * log2pi).sum(-1)
        log_p = (-0.5 * z**2 - 0.5 * log2pi).sum(-1)
        logits = mlp("decoder", z)
        log_lik = -F.binary_cross_entropy_with_logits(logits, xb, reduction="none").sum(-1)
        return -(log_lik + log_p - log_q).sum() * (num / xb.shape[0])

    times = []
    for epoch in range(epochs):
        order = torch.as_tensor(epoch_order(SEED, epoch, num, BATCH))
        start = time.perf_counter()
        total = torch.zeros(())
        for idx in order:
            loss = neg_elbo(data[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach()
        float(total)  # one host sync per epoch
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def jax_epoch_seconds(x: np.ndarray, params: dict, epochs: int) -> np.ndarray:
    import jax
    import jax.numpy as jnp
    import optax

    weights = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in params.items()}
    opt = optax.adam(LEARNING_RATE)
    data = jnp.asarray(x)
    num = len(x)
    log2pi = float(np.log(2 * np.pi))

    def mlp(w: dict, prefix: str, h: jax.Array) -> jax.Array:
        h = jax.nn.relu(h @ w[f"{prefix}.0.weight"].T + w[f"{prefix}.0.bias"])
        return h @ w[f"{prefix}.1.weight"].T + w[f"{prefix}.1.bias"]

    def neg_elbo(w: dict, xb: jax.Array, key: jax.Array) -> jax.Array:
        loc, raw = jnp.split(mlp(w, "encoder", xb), 2, axis=-1)
        scale = jax.nn.softplus(raw) + FLOOR
        eps = jax.random.normal(key, loc.shape)
        z = loc + scale * eps
        log_q = (-0.5 * eps**2 - jnp.log(scale) - 0.5 * log2pi).sum(-1)
        log_p = (-0.5 * z**2 - 0.5 * log2pi).sum(-1)
        logits = mlp(w, "decoder", z)
        log_lik = (xb * jax.nn.log_sigmoid(logits) + (1 - xb) * jax.nn.log_sigmoid(-logits))
        return -(log_lik.sum(-1) + log_p - log_q).sum() * (num / xb.shape[0])

    @jax.jit
    def run_epoch(state, order):
        def step(carry, idx):
            w, opt_state, key = carry
            key, sub = jax.random.split(key)
            loss, grads = jax.value_and_grad(neg_elbo)(w, data[idx], sub)
            updates, opt_state = opt.update(grads, opt_state, w)
            return (optax.apply_updates(w, updates), opt_state, key), loss

        state, losses = jax.lax.scan(step, state, order)
        return state, losses.sum()

    state = (weights, opt.init(weights), jax.random.PRNGKey(SEED))
    times = []
    for epoch in range(epochs):
        order = jnp.asarray(epoch_order(SEED, epoch, num, BATCH))
        start = time.perf_counter()
        state, total = run_epoch(state, order)
        float(total)  # one host sync per epoch
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def main(args: argparse.Namespace) -> pd.DataFrame:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        if args.threads == 1:  # read when JAX starts its CPU backend (imported lazily below)
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                       + " --xla_cpu_multi_thread_eigen=false")
    load_before = os.getloadavg()[0]
    splits = prepare("mnist5k", likelihood="bernoulli")
    x = splits.train
    assert x.shape == (4000, 784)
    spec = ppl_vae.models.load_spec("gaussian_gaussian")
    params = ppl_vae.models.init_params(spec, seed=SEED)
    epochs = args.warmup + args.epochs
    timings = {
        "hand-written PyTorch": torch_epoch_seconds(x, params, epochs),
        "hand-written JAX/optax": jax_epoch_seconds(x, params, epochs),
        "ppl_vae.fit, Pyro": fit_epoch_seconds("pyro", x, epochs),
        "ppl_vae.fit, NumPyro": fit_epoch_seconds("numpyro", x, epochs),
    }
    median = {name: float(np.median(t[args.warmup:])) for name, t in timings.items()}
    torch_ref, jax_ref = median["hand-written PyTorch"], median["hand-written JAX/optax"]
    table = pd.DataFrame({
        "loop": list(median),
        "s/epoch (median)": list(median.values()),
        "vs hand PyTorch": [m / torch_ref for m in median.values()],
        "vs hand JAX": [m / jax_ref for m in median.values()],
    })
    threads = args.threads or "library default"
    print(f"MNIST-5k, 4000 images, batch {BATCH} ({len(x) // BATCH} steps/epoch), 784-400-20 "
          f"VAE, reparam ELBO, Adam; median of {args.epochs} epochs after {args.warmup} "
          f"warm-up; threads: {threads}; {machine_description()}; load average (1 min) "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(table.to_markdown(index=False, floatfmt=".3f"))
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12, help="timed epochs")
    parser.add_argument("--warmup", type=int, default=2, help="untimed epochs first")
    parser.add_argument("--threads", type=int, help="CPU threads for torch and XLA")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
