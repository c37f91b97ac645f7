"""The NumPyro engine of :func:`ppl_vae.training.fit`.

A chunk of steps (at most an epoch, cut where the driver evaluates or checkpoints) is one jitted
call: ``SVI.update`` under ``jax.lax.scan`` over the rows of a ``(L, B)`` index array, with the
training array already on the device, so no Python runs between steps. Every chunk is padded to
the same length, so the function compiles once. The scan also returns,
per step, whether the loss and the updated parameters are finite; after a bad step the chunk is
replayed up to the step before it (same keys, same result), so the engine keeps the last good
state. Splitting a run into chunks changes nothing numerically: the scan body is the same.

The whole ``SVIState`` (parameters, optax state, RNG key) is the checkpoint: its leaves go to
safetensors, and the tree structure is rebuilt from a fresh ``SVI.init``.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.infer
import optax
from numpyro import handlers

from ppl_vae.models import make_elbo
from ppl_vae.models.numpyro_backend import resolve_device
from ppl_vae.runs import CheckpointError
from ppl_vae.training import loop


class NumPyroEngine(loop.Engine):
    """Jitted SVI chunks, evaluation and checkpoint state for a :class:`NumPyroVAE`."""

    backend = "numpyro"
    OPTIMIZERS: dict[str, Any] = {
        "adam": optax.adam,
        "clipped-adam": lambda lr: optax.chain(optax.clip(loop.CLIP_NORM), optax.adam(lr)),
    }
    """:data:`ppl_vae.training.loop.OPTIMIZERS` by name as optax transformations
    (``clipped-adam`` clips each gradient element before Adam, as Pyro's ``ClippedAdam``)."""

    def __init__(self, vae: Any, *, estimator: Any, eval_estimator: Any, num_particles: int,
                 optimizer: Any, seed: int, num_data: int, example_batch: np.ndarray,
                 max_chunk: int, example_labels: np.ndarray | None = None,
                 device: str | None = None) -> None:
        super().__init__(vae, seed=seed, num_data=num_data)
        self.device = resolve_device(device)
        self.device_name = f"{self.device.platform}:{self.device.id}"
        self.max_chunk = max_chunk
        example_idx = jnp.arange(example_batch.shape[0])
        example_c = vae.as_index(example_labels)
        self.elbo, self.guide = make_elbo(vae, estimator, num_particles,
                                          example_batch=example_batch, idx=example_idx,
                                          num_data=num_data, c=example_c)
        self.eval_elbo, self.eval_guide = make_elbo(vae, eval_estimator, num_particles,
                                                    example_batch=example_batch,
                                                    idx=example_idx, num_data=num_data,
                                                    c=example_c)
        self.svi = numpyro.infer.SVI(vae.model, self.guide, optimizer, self.elbo,
                                     num_data=num_data)
        with jax.default_device(self.device):  # jitted: one compile instead of op by op
            state = jax.jit(self.svi.init)(jax.random.PRNGKey(seed),
                                           vae.as_tensor(example_batch), example_idx,
                                           c=example_c)
        self.svi_state = jax.device_put(state, self.device)
        self._chunk = jax.jit(self._chunk_fn)
        self._loss = jax.jit(self._eval_loss_fn)

    # -- data and steps
    def _on_device(self, array: jax.Array) -> jax.Array:
        return jax.device_put(array, self.device)

    def _chunk_fn(self, state: Any, x: jax.Array, c: jax.Array | None, idx: jax.Array,
                  n: jax.Array) -> Any:
        # Always max_chunk scan iterations, the steps past n skipped by lax.cond: one compiled
        # function serves every chunk length (and the replay after a bad step).
        def step(state: Any, ib: jax.Array) -> tuple[Any, Any]:
            state, loss = self.svi.update(state, x[ib], ib, c=None if c is None else c[ib])
            leaves = jax.tree_util.tree_leaves(self.svi.get_params(state))
            finite = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.isfinite(v).all()
                                                              for v in leaves]))
            return state, (loss, finite)

        def skip(state: Any, ib: jax.Array) -> tuple[Any, Any]:
            return state, (jnp.zeros((), self.vae.dtype), jnp.array(True))

        def body(state: Any, inputs: tuple[jax.Array, jax.Array]) -> tuple[Any, Any]:
            i, ib = inputs
            return jax.lax.cond(i < n, step, skip, state, ib)

        return jax.lax.scan(body, state, (jnp.arange(idx.shape[0]), idx))

    def run(self, idx: np.ndarray) -> loop.ChunkResult:
        n = len(idx)
        padded = np.zeros((self.max_chunk, idx.shape[1]), dtype=np.int32)
        padded[:n] = idx
        idx_j = jax.device_put(padded, self.device)
        state, (losses, finite) = self._chunk(self.svi_state, self._x, self._c, idx_j, n)
        losses, finite = np.asarray(losses)[:n], np.asarray(finite)[:n]
        now = time.perf_counter()
        if finite.all():
            self.svi_state = state
            return loop.ChunkResult(losses / self.num_data, np.full(n, now), None)
        bad = int(np.argmin(finite))
        if bad > 0:
            self.svi_state, _ = self._chunk(self.svi_state, self._x, self._c, idx_j, bad)
        failure = self._diagnose(float(losses[bad]), idx_j[bad], bad)
        return loop.ChunkResult(losses[:bad] / self.num_data, np.full(bad, now), failure)

    def _loss_fn(self, params: dict, key: jax.Array, x: jax.Array, idx: jax.Array,
                 c: jax.Array | None) -> jax.Array:
        return self.elbo.loss(key, params, self.vae.model, self.guide, x, idx, c=c)

    def _eval_loss_fn(self, params: dict, key: jax.Array, x: jax.Array,
                      idx: jax.Array, c: jax.Array | None) -> jax.Array:
        return self.eval_elbo.loss(key, params, self.vae.model, self.eval_guide, x, idx, c=c)

    def evaluate(self, x: np.ndarray, step: int, c: np.ndarray | None = None) -> float:
        """Per-datapoint loss (negative objective) on held-out ``x`` (labels ``c``), own RNG
        stream."""
        params = self.svi.get_params(self.svi_state)
        key = jax.random.PRNGKey(loop.eval_seed(self.seed, step))
        vae = self.vae

        def batch_loss(i: int, rows: np.ndarray, idx: np.ndarray, labels: Any) -> float:
            xb = jax.device_put(vae.as_tensor(rows), self.device)
            return float(self._loss(params, jax.random.fold_in(key, i), xb, vae.as_index(idx),
                                    vae.as_index(labels)))

        return loop.held_out_loss(x, c, batch_loss)

    def get_params(self) -> dict[str, np.ndarray]:
        """The model's parameters (an estimator's own, e.g. a baseline network's, stay in
        the SVI state)."""
        params = self.svi.get_params(self.svi_state)
        return {name: np.asarray(params[name]) for name in self.vae.params}

    def finalize(self) -> None:
        """Copy the trained parameters into the VAE."""
        self.vae.set_params(self.get_params())

    # -- checkpoint state
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        leaves, treedef = jax.tree_util.tree_flatten(self.svi_state)
        arrays = {f"svi/{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
        return arrays, {"num_leaves": len(leaves), "treedef": str(treedef)}

    def load_state(self, params: dict[str, np.ndarray], arrays: dict[str, np.ndarray],
                   meta: dict[str, Any]) -> None:
        leaves, treedef = jax.tree_util.tree_flatten(self.svi_state)
        saved = [arrays.get(f"svi/{i:05d}") for i in range(meta["num_leaves"])]
        if len(saved) != len(leaves) or str(treedef) != meta["treedef"] or any(
                s is None or s.shape != leaf.shape or s.dtype != leaf.dtype
                for s, leaf in zip(saved, leaves, strict=False)):
            raise CheckpointError("the checkpoint's SVI state does not fit this model and "
                                  "optimizer (different structure, shapes or dtypes)")
        self.svi_state = jax.device_put(jax.tree_util.tree_unflatten(treedef, saved), self.device)

    # -- helpers
    def _diagnose(self, loss: float, ib: jax.Array, index: int) -> loop.StepFailure:
        params = self.svi.get_params(self.svi_state)
        _, key = jax.random.split(self.svi_state.rng_key)  # the key SVI.update would use
        cb = None if self._c is None else self._c[ib]
        params_ok, sites_ok, batch_max = jax.jit(self._report)(
            params, self.svi_state.mutable_state or {}, key, self._x[ib], ib, cb)
        return loop.step_failure(index, loss, params_ok, sites_ok, batch_max)

    def _report(self, params: dict, mutable: dict, key: jax.Array, xb: jax.Array,
                ib: jax.Array, cb: jax.Array | None) -> tuple[dict, dict, jax.Array]:
        """Finiteness of each parameter with its gradient, and of each sample site's value
        and log-density, at ``params`` on one minibatch (jitted: one compile, not hundreds)."""
        # the baselines' running averages (mutable state) enter as constants, as in SVI
        grads = jax.grad(lambda p: self._loss_fn({**p, **mutable}, key, xb, ib, cb))(params)
        ok_params = {n: jnp.isfinite(params[n]).all() & jnp.isfinite(grads[n]).all()
                     for n in params}
        with handlers.substitute(data=params), handlers.seed(rng_seed=key):
            guide_tr = handlers.trace(self.guide).get_trace(xb, ib, self.num_data, c=cb)
            model_tr = handlers.trace(handlers.replay(self.vae.model, trace=guide_tr)) \
                .get_trace(xb, ib, self.num_data, c=cb)
        ok_sites = loop.sites_finite(self.vae.ops, {"guide": guide_tr.items(),
                                               "model": model_tr.items()})
        return ok_params, ok_sites, jnp.abs(xb).max()
