"""The NumPyro engine of :func:`ppl_vae.training.fit`.

A chunk of steps (at most an epoch, cut where the driver evaluates or checkpoints) is one jitted
call: ``SVI.update`` under ``jax.lax.scan`` over the rows of a ``(L, B)`` index array, with the
training array already on the device, so no Python runs between steps. Every chunk is padded to
the same length, so the function compiles once. The scan returns each step's loss, and
whether the parameters at the end of the chunk are finite: that one check covers every step,
because a non-finite gradient makes its parameter non-finite under Adam (NaN moments, or
∞/∞ in the step) and a non-finite parameter stays so, so finite final parameters mean finite
parameters after every step (checking them every step cost 6% of the step on the standard
VAE). After a bad chunk a second compiled variant finds the first bad step (its per-step
check), and the chunk is replayed up to the step before it (same keys, same result), so the
engine keeps the last good state. Splitting a run into chunks changes nothing numerically:
the scan body is the same.

The whole ``SVIState`` (parameters, optax state, RNG key) is the checkpoint: its leaves go to
safetensors, and the tree structure is rebuilt from a fresh ``SVI.init``.

A learning-rate schedule (:class:`ppl_vae.training.schedules.LRSchedule`) is an optax schedule
as Adam's ``learning_rate``; its step count is in the optax state, so in the checkpoint. A
``plateau`` schedule is ``optax.contrib.reduce_on_plateau``'s rule, fed each validation loss
between chunks (:meth:`NumPyroEngine.after_validation`), its state saved with the SVI state;
the rate it sets reaches Adam through ``optax.inject_hyperparams``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.infer
import optax
import optax.contrib
from numpyro import handlers

from ppl_vae.models import make_elbo
from ppl_vae.models.numpyro_backend import resolve_device
from ppl_vae.runs import CheckpointError
from ppl_vae.training import loop
from ppl_vae.training.schedules import LRSchedule


class NumPyroEngine(loop.Engine):
    """Jitted SVI chunks, evaluation and checkpoint state for a :class:`NumPyroVAE`."""

    backend = "numpyro"

    @staticmethod
    def build_optimizer(name: str, schedule: LRSchedule) -> optax.GradientTransformation:
        """A named optimizer of :data:`ppl_vae.training.loop.OPTIMIZERS` following
        ``schedule``, as an optax transformation: ``optax.adam``, and for ``clipped-adam``
        ``optax.chain(optax.clip, optax.adam)`` (each gradient element clipped before Adam, as
        Pyro's ``ClippedAdam``). Adam's ``learning_rate`` is the float of a ``constant``
        schedule (today's optimizer exactly), an optax schedule otherwise; ``plateau``
        injects it (``optax.inject_hyperparams``) for :meth:`after_validation` to set."""
        if name not in _OPTAX:
            raise ValueError(f"unknown optimizer {name!r}; choose one of "
                             f"{', '.join(loop.OPTIMIZERS)}")
        if schedule.on_validation:
            return optax.inject_hyperparams(_OPTAX[name])(learning_rate=schedule.learning_rate)
        return _OPTAX[name](_optax_rate(schedule))

    def __init__(self, vae: Any, *, estimator: Any, eval_estimator: Any, num_particles: int,
                 optimizer: Any, seed: int, num_data: int, example_batch: np.ndarray,
                 max_chunk: int, example_labels: np.ndarray | None = None,
                 device: str | None = None, schedule: LRSchedule | None = None,
                 valid_particles: int | None = None, kl_weighting: bool = False,
                 free_bits: float = 0.0) -> None:
        """``schedule``: the one :meth:`build_optimizer` built ``optimizer`` from (None for a
        user's optimizer); the engine reads its learning rate from it and runs ``plateau``.
        ``valid_particles``: particles of the validation bound (default ``num_particles``);
        ``kl_weighting``, ``free_bits``: the training objective's options
        (:func:`ppl_vae.models.make_elbo`); evaluation scores the unweighted bound."""
        super().__init__(vae, seed=seed, num_data=num_data)
        self.device = resolve_device(device)
        self.device_name = f"{self.device.platform}:{self.device.id}"
        self.max_chunk = max_chunk
        example_idx = jnp.arange(example_batch.shape[0])
        example_c = vae.as_index(example_labels)
        self.elbo, self.guide = make_elbo(vae, estimator, num_particles,
                                          kl_weighting=kl_weighting, free_bits=free_bits,
                                          example_batch=example_batch, idx=example_idx,
                                          num_data=num_data, c=example_c)
        self.eval_elbo, self.eval_guide = make_elbo(vae, eval_estimator,
                                                    valid_particles or num_particles,
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
        self._chunk = jax.jit(self._chunk_fn, static_argnames="every_step")
        self._loss = jax.jit(self._eval_loss_fn)
        self.schedule = schedule
        self._rate = None if schedule is None else _optax_rate(schedule)
        self._plateau: Any = None
        if schedule is not None and schedule.on_validation:
            self._init_plateau(schedule)

    # -- data and steps
    def _on_device(self, array: jax.Array) -> jax.Array:
        return jax.device_put(array, self.device)

    def _chunk_fn(self, state: Any, x: jax.Array, c: jax.Array | None, idx: jax.Array,
                  n: jax.Array, kl: jax.Array | None = None, every_step: bool = False) -> Any:
        # Always max_chunk scan iterations, the steps past n skipped by lax.cond: one compiled
        # function serves every chunk length (and the replay after a bad step). kl: one KL
        # weight per step, or None (no leaves: the function traced is the one without it).
        # Returns the state, the losses and the parameters' finiteness: at the end of the
        # chunk, or with every_step (the search for a bad step) after each step.
        def finite_params(state: Any) -> jax.Array:
            leaves = jax.tree_util.tree_leaves(self.svi.get_params(state))
            return jnp.all(jnp.stack([jnp.isfinite(v).all() for v in leaves]))

        def step(state: Any, inputs: tuple[jax.Array, jax.Array | None]) -> tuple[Any, Any]:
            ib, w = inputs
            kw = {} if w is None else {"kl_weight": w}
            state, loss = self.svi.update(state, x[ib], ib, c=None if c is None else c[ib],
                                          **kw)
            return state, (loss, finite_params(state)) if every_step else loss

        def skip(state: Any, inputs: tuple[jax.Array, jax.Array | None]) -> tuple[Any, Any]:
            loss = jnp.zeros((), self.vae.dtype)
            return state, (loss, jnp.array(True)) if every_step else loss

        def body(state: Any, inputs: tuple[jax.Array, jax.Array, jax.Array | None]
                 ) -> tuple[Any, Any]:
            i, ib, w = inputs
            return jax.lax.cond(i < n, step, skip, state, (ib, w))

        state, out = jax.lax.scan(body, state, (jnp.arange(idx.shape[0]), idx, kl))
        if every_step:
            losses, finite = out
            return state, losses, finite
        return state, out, finite_params(state)

    def run(self, idx: np.ndarray, kl_weights: np.ndarray | None = None) -> loop.ChunkResult:
        """The steps of the minibatches ``idx`` (``(L, B)`` rows); ``kl_weights``, one float
        per step, go to the ELBO as ``kl_weight`` (None: the ELBO is called without it)."""
        n = len(idx)
        padded = np.zeros((self.max_chunk, idx.shape[1]), dtype=np.int32)
        padded[:n] = idx
        idx_j = jax.device_put(padded, self.device)
        kl = None
        if kl_weights is not None:
            padded_kl = np.zeros(self.max_chunk, dtype=self.vae.dtype)  # padded as idx
            padded_kl[:n] = kl_weights
            kl = jax.device_put(padded_kl, self.device)
        args = (self._x, self._c, idx_j)
        state, losses, params_finite = self._chunk(self.svi_state, *args, n, kl)
        losses = np.asarray(losses)[:n]
        now = time.perf_counter()
        if bool(params_finite) and np.isfinite(losses).all():
            self.svi_state = state
            return loop.ChunkResult(losses / self.num_data, np.full(n, now), None)
        _, _, finite = self._chunk(self.svi_state, *args, n, kl, every_step=True)
        finite = np.asarray(finite)[:n] & np.isfinite(losses)
        bad = int(np.argmin(finite))
        if bad > 0:  # the replay: same keys, same weights
            self.svi_state, _, _ = self._chunk(self.svi_state, *args, bad, kl)
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

    # -- learning rate
    def after_validation(self, loss: float) -> None:
        """Feed a validation loss to a ``plateau`` schedule (no-op otherwise); the new rate
        is set in the SVI state for the next chunk. The driver calls it after every
        validation evaluation, the one at step 0 included."""
        if self._plateau is None:
            return
        value = np.asarray(loss, dtype=np.asarray(self._plateau_state.best_value).dtype)
        self._plateau_state = self._plateau_update(self._plateau_state, value)
        rate = self.schedule.learning_rate * float(self._plateau_state.scale)
        optim_state = self.svi_state.optim_state
        current = optax.tree.get(optim_state, "learning_rate")
        # same dtype, not weakly typed: the chunk function is not compiled again
        new = jax.device_put(np.asarray(rate, dtype=current.dtype), self.device)
        self.svi_state = self.svi_state._replace(
            optim_state=optax.tree.set(optim_state, learning_rate=new))

    def learning_rate(self) -> float:
        """The learning rate the next step uses (NaN if a user's optimizer does not say)."""
        if self._rate is None or self._plateau is not None:
            try:  # an injected rate: plateau's, or a user's inject_hyperparams
                return float(optax.tree.get(self.svi_state.optim_state, "learning_rate"))
            except (KeyError, ValueError, TypeError):
                return math.nan
        if callable(self._rate):
            # the count optax.scale_by_schedule evaluates the schedule at
            count = optax.tree.get(self.svi_state.optim_state, "ScaleByScheduleState").count
            return float(self._rate(count))
        return float(self._rate)

    def _init_plateau(self, schedule: LRSchedule) -> None:
        try:
            optax.tree.get(self.svi_state.optim_state, "learning_rate")
        except (KeyError, ValueError):
            raise TypeError("a 'plateau' learning-rate schedule needs the optimizer "
                            "NumPyroEngine.build_optimizer(name, schedule) builds (its rate "
                            "injected by optax.inject_hyperparams)") from None
        # torch reduces when the evaluations without improvement exceed its patience, optax
        # when they reach it: optax's patience is torch's + 1. Improvement is
        # v < (1 - rtol) * best - atol in optax, v < best * (1 - threshold) in torch.
        self._plateau = optax.contrib.reduce_on_plateau(
            factor=schedule.plateau_factor, patience=schedule.plateau_patience + 1,
            rtol=schedule.plateau_threshold, atol=0.0, cooldown=0, accumulation_size=1,
            min_scale=schedule.min_learning_rate / schedule.learning_rate)
        params = self.svi.get_params(self.svi_state)  # sets the state's dtypes
        self._plateau_state = jax.device_put(self._plateau.init(params), self.device)
        self._plateau_update = jax.jit(
            lambda state, value: self._plateau.update({}, state, value=value)[1])

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
        meta: dict[str, Any] = {"num_leaves": len(leaves), "treedef": str(treedef)}
        if self._plateau is not None:
            plateau = jax.tree_util.tree_leaves(self._plateau_state)
            arrays.update({f"plateau/{i:05d}": np.asarray(leaf)
                           for i, leaf in enumerate(plateau)})
            meta["plateau_leaves"] = len(plateau)
        return arrays, meta

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
        if self._plateau is not None:
            leaves, treedef = jax.tree_util.tree_flatten(self._plateau_state)
            saved = [arrays.get(f"plateau/{i:05d}")
                     for i in range(meta.get("plateau_leaves", 0))]
            if len(saved) != len(leaves) or any(
                    s is None or s.shape != np.shape(leaf) or s.dtype != np.asarray(leaf).dtype
                    for s, leaf in zip(saved, leaves, strict=False)):
                raise CheckpointError("the checkpoint holds no reduce-on-plateau state that "
                                      "fits this 'plateau' learning-rate schedule")
            self._plateau_state = jax.device_put(jax.tree_util.tree_unflatten(treedef, saved),
                                                 self.device)

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


def _adam(learning_rate: Any) -> optax.GradientTransformation:
    return optax.adam(learning_rate)


def _clipped_adam(learning_rate: Any) -> optax.GradientTransformation:
    return optax.chain(optax.clip(loop.CLIP_NORM), optax.adam(learning_rate))


_OPTAX = {"adam": _adam, "clipped-adam": _clipped_adam}
"""The optax optimizers of :data:`ppl_vae.training.loop.OPTIMIZERS` by name."""



def _optax_rate(schedule: LRSchedule) -> Any:
    """Adam's ``learning_rate`` for ``schedule``: the float of ``constant`` (and the starting
    rate of ``plateau``), else an optax schedule of the step count (float32 without x64)."""
    lr, warmup, kind = schedule.learning_rate, schedule.warmup_steps, schedule.kind
    if kind in ("constant", "plateau"):
        return lr
    # lr (t + 1) / W for t < W (W = 1: a constant lr for one step)
    ramp = optax.linear_schedule(lr / warmup, lr, warmup - 1) if warmup else None
    if kind == "warmup":
        return ramp
    if kind == "cosine":
        decay = optax.cosine_decay_schedule(lr, schedule.horizon,
                                            alpha=schedule.min_learning_rate / lr)
    else:
        decay = optax.exponential_decay(lr, schedule.horizon, schedule.decay_rate,
                                        staircase=kind == "step")
    return decay if ramp is None else optax.join_schedules([ramp, decay], [warmup])
