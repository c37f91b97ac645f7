"""The Pyro engine of :func:`ppl_vae.training.fit`.

One step is what ``pyro.infer.SVI.step`` does — ``elbo.loss_and_grads`` on the minibatch with
the parameters it touches captured, the ``PyroOptim`` update of those with a gradient, zeroed
gradients — with one difference: the loss and the gradients are checked for non-finite values
*before* the update, so a bad step never touches the parameters. For the single-sample
reparameterized ELBO (``Trace_ELBO``, the default estimator) the programs are recorded once as
a graph of torch operations and the graph is replayed each step
(:mod:`ppl_vae.training.pyro_replay`): the same objective and random stream without Pyro's
per-step machinery; :attr:`PyroEngine.replay` says whether a run uses it, and why not.

Parameters an estimator adds outside the VAE (a baseline's per-datapoint averages, a neural
baseline's network) are saved in checkpoints by their param-store names and put back on resume.

A learning-rate schedule (:class:`ppl_vae.training.schedules.LRSchedule`) is one of torch's
``lr_scheduler`` classes over the one torch optimizer (:class:`JointLRScheduler`), stepped after
each optimizer step, or for ``plateau`` after each validation evaluation with its loss
(:meth:`PyroEngine.after_validation`); its state is in the checkpoint with the optimizer's.

Randomness comes from a private copy of torch's generator state, swapped in around each chunk of
steps (``torch.random.fork_rng``): the user's global RNG is left alone, evaluation draws from its
own seeded stream, and the state is saved in checkpoints for exact resume.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyro
import torch
from pyro import poutine

from ppl_vae.estimators import is_baseline_average
from ppl_vae.models import make_elbo
from ppl_vae.models.pyro_backend import resolve_device
from ppl_vae.runs import CheckpointError
from ppl_vae.runs.checkpoints import decode_tree, encode_tree
from ppl_vae.training import loop
from ppl_vae.training.pyro_replay import RecordedELBO, record_elbo
from ppl_vae.training.schedules import LRSchedule


class JointOptim(pyro.optim.PyroOptim):
    """A ``PyroOptim`` that steps every parameter with *one* torch optimizer.

    With ``fused=True`` in ``optim_args`` (what ``"adam"`` uses) torch's fused kernel does
    Adam's update in one pass over each parameter instead of about ten elementwise passes:
    the same update up to float rounding (measured: ≤ 2.4e-7 apart after 50 steps on the
    784-400-20 VAE's parameters), 2.3 → 0.7 ms per step on one CPU thread. Where the
    parameters' device has no fused kernel, the plain implementation is used.

    ``PyroOptim`` creates one torch optimizer per parameter and calls each one every step;
    Adam's (and ClippedAdam's) update treats each parameter on its own, so one optimizer over
    all of them computes the same values with one call instead of one per parameter
    (torch.profiler, 784-400-20 VAE on CPU: 0.7 instead of 1.6 ms of optimizer overhead per
    step of ~9 ms). Parameters seen later
    (a neural baseline's) join as a new parameter group. :meth:`get_state` and
    :meth:`set_state` keep ``PyroOptim``'s format, one single-parameter state dict per
    parameter name, so checkpoints are the same. Only dictionary ``optim_args`` and no
    ``clip_args``; a parameter without a gradient is skipped, as torch's optimizers do.
    """

    def __init__(self, optim_constructor: Any, optim_args: dict[str, Any]) -> None:
        super().__init__(optim_constructor, optim_args)
        self.optimizer: torch.optim.Optimizer | None = None
        self._known: set[torch.Tensor] = set()

    def __call__(self, params: list[torch.Tensor], *args: Any, **kwargs: Any) -> None:
        new = [p for p in params if p not in self._known]
        if new:
            self._add(new)
        self.optimizer.step(*args, **kwargs)

    def _add(self, params: list[torch.Tensor]) -> None:
        if self.optimizer is None:
            args = dict(self.pt_optim_args)
            if args.get("fused") and not _has_fused_kernel(params):
                args["fused"] = False
            self.optimizer = self.pt_optim_constructor(params, **args)
            self._created()
        else:
            self._join(params)
        store = pyro.get_param_store()
        for p in params:
            self._known.add(p)
            saved = self._state_waiting_to_be_consumed.pop(store.param_name(p), None)
            if saved is not None and saved["state"]:
                # as torch's load_state_dict: "step" as saved, the moments in p's dtype
                fused = bool(self.optimizer.defaults.get("fused"))
                self.optimizer.state[p] = {
                    k: _step_tensor(v, p, fused) if k == "step"
                    else v.to(dtype=p.dtype, device=p.device, copy=True)
                    for k, v in saved["state"][0].items()}

    def _created(self) -> None:
        """Called once the torch optimizer exists."""

    def _join(self, params: list[torch.Tensor]) -> None:
        """Parameters seen after the first step: a new parameter group."""
        self.optimizer.add_param_group({"params": params})

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step."""
        if self.optimizer is None:
            return float(self.pt_optim_args["lr"])
        return float(self.optimizer.param_groups[0]["lr"])

    def get_state(self) -> dict[str, Any]:
        if self.optimizer is None:
            return {}
        whole = self.optimizer.state_dict()
        store = pyro.get_param_store()
        state: dict[str, Any] = {}
        flat = [p for group in self.optimizer.param_groups for p in group["params"]]
        packed = [(i, group) for group in whole["param_groups"] for i in group["params"]]
        for p, (i, group) in zip(flat, packed, strict=True):
            options = {k: v for k, v in group.items() if k != "params"}
            state[store.param_name(p)] = {
                "state": {0: whole["state"][i]} if i in whole["state"] else {},
                "param_groups": [{**options, "params": [0]}]}
        return state


class JointLRScheduler(JointOptim):
    """:class:`JointOptim` with one ``torch.optim.lr_scheduler`` over its one torch optimizer.

    It has the interface of ``pyro.optim.PyroLRScheduler`` — ``step(*args, **kwargs)`` with
    the scheduler's own arguments (none after a training step; the validation loss for
    ``ReduceLROnPlateau``), ``get_state``/``set_state`` — but not its implementation:
    ``PyroLRScheduler`` is a ``PyroOptim``, one torch optimizer and so one scheduler per
    parameter, the per-parameter calls :class:`JointOptim` exists to avoid.

    The torch optimizer is created at the first step, when the parameters are known. Until
    then the scheduler runs over a stand-in optimizer (one placeholder tensor), so that the
    learning rate of step 0 can be read and a validation loss fed before any step; when the
    optimizer is created, a scheduler is built over it and given the stand-in's state and
    learning rate. Parameters seen later join the first parameter group, so the scheduler's
    per-group base rates cover them too.

    ``scheduler_constructor(optimizer)`` builds the scheduler. :meth:`get_state` is
    ``{"optimizer": JointOptim's per-parameter state, "scheduler": the scheduler's
    state_dict()}``, the latter plain numbers, strings and lists (JSON in a checkpoint).
    """

    def __init__(self, optim_constructor: Any, optim_args: dict[str, Any],
                 scheduler_constructor: Callable[[torch.optim.Optimizer], Any]) -> None:
        super().__init__(optim_constructor, optim_args)
        self.scheduler_constructor = scheduler_constructor
        standin = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=optim_args["lr"])
        self.scheduler = scheduler_constructor(standin)

    def step(self, *args: Any, **kwargs: Any) -> None:
        """Step the scheduler (after an optimizer step; ``ReduceLROnPlateau``: with the
        validation loss), as ``PyroLRScheduler.step``."""
        self.scheduler.step(*args, **kwargs)

    @property
    def learning_rate(self) -> float:
        return float(self.scheduler.optimizer.param_groups[0]["lr"])

    def _created(self) -> None:
        standin = self.scheduler
        self.scheduler = self.scheduler_constructor(self.optimizer)
        self._load_scheduler(standin.state_dict())

    def _join(self, params: list[torch.Tensor]) -> None:
        self.optimizer.param_groups[0]["params"].extend(params)

    def _load_scheduler(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)
        # the learning rates the state was saved with: what the next step uses
        for group, lr in zip(self.scheduler.optimizer.param_groups,
                             self.scheduler.get_last_lr(), strict=True):
            group["lr"] = lr

    def get_state(self) -> dict[str, Any]:
        return {"optimizer": super().get_state(), "scheduler": self.scheduler.state_dict()}

    def set_state(self, state_dict: dict[str, Any]) -> None:
        super().set_state(state_dict["optimizer"])
        self._load_scheduler(copy.deepcopy(state_dict["scheduler"]))


def _torch_scheduler(optimizer: torch.optim.Optimizer, schedule: LRSchedule) -> Any:
    """The torch scheduler of ``schedule`` over ``optimizer`` (stepped once per step, or, for
    ``plateau``, once per validation evaluation with its loss)."""
    sched = torch.optim.lr_scheduler
    if schedule.kind == "plateau":
        # eps=0: a reduction is skipped only when it changes nothing (at min_lr), as in
        # optax's reduce_on_plateau, which has no eps; torch's default 1e-8 would stop the
        # reductions below ~1e-8 where optax's go on
        return sched.ReduceLROnPlateau(
            optimizer, mode="min", factor=schedule.plateau_factor,
            patience=schedule.plateau_patience, threshold=schedule.plateau_threshold,
            threshold_mode="rel", cooldown=0, min_lr=schedule.min_learning_rate, eps=0.0)
    warmup = schedule.warmup_steps
    phases, milestones = [], []
    if warmup:
        # lr (t + 1) / W for t < W; total_iters = W - 1 puts the last warm-up step at lr
        phases.append(sched.LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0,
                                     total_iters=warmup - 1))
        milestones.append(warmup)
    horizon = schedule.horizon
    if schedule.kind == "cosine":
        phases.append(sched.CosineAnnealingLR(optimizer, T_max=horizon,
                                              eta_min=schedule.min_learning_rate))
        # CosineAnnealingLR is periodic past T_max; from there on keep its last value, lr_min
        phases.append(sched.MultiplicativeLR(optimizer, lambda epoch: 1.0))
        milestones.append(warmup + horizon + 1)
    elif schedule.kind == "exponential":
        phases.append(sched.ExponentialLR(optimizer, gamma=schedule.decay_rate ** (1 / horizon)))
    elif schedule.kind == "step":
        phases.append(sched.StepLR(optimizer, step_size=horizon, gamma=schedule.decay_rate))
    if len(phases) == 1:
        return phases[0]
    return sched.SequentialLR(optimizer, phases, milestones[:len(phases) - 1])


def _has_fused_kernel(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused Adam runs on these parameters (floating point, CPU or CUDA)."""
    return all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


def _step_tensor(step: Any, param: torch.Tensor, fused: bool) -> torch.Tensor:
    """A saved step count as torch's ``load_state_dict`` would restore it: a float32 tensor
    on the parameter's device for the fused kernel, as saved otherwise."""
    step = torch.as_tensor(step)
    return step.to(dtype=torch.float32, device=param.device, copy=True) if fused else step.clone()


def move_to_device(vae: Any, device: str | None) -> None:
    """Put the VAE's parameters on ``device`` in place (the objects Pyro registered stay)."""
    if device is None:
        return
    target = resolve_device(device)
    if target == vae.device:
        return
    with torch.no_grad():
        for p in vae.parameters():
            p.data = p.data.to(target)
    vae.device = target


class PyroEngine(loop.Engine):
    """SVI steps, evaluation and checkpoint state for a :class:`PyroVAE`."""

    backend = "pyro"

    @staticmethod
    def build_optimizer(name: str, schedule: LRSchedule) -> JointOptim:
        """A named optimizer of :data:`ppl_vae.training.loop.OPTIMIZERS` following
        ``schedule``: the updates of ``pyro.optim.Adam`` (by torch's fused kernel) or
        ``pyro.optim.ClippedAdam`` as one :class:`JointOptim`; a schedule other than
        ``constant`` as a :class:`JointLRScheduler` with torch's schedulers
        (``LinearLR`` warm-up, ``CosineAnnealingLR``, ``ExponentialLR``, ``StepLR``, chained
        by ``SequentialLR``; ``ReduceLROnPlateau``)."""
        lr = schedule.learning_rate
        if name == "adam":
            constructor, args = torch.optim.Adam, {"lr": lr, "fused": True}
        elif name == "clipped-adam":
            constructor = pyro.optim.clipped_adam.ClippedAdam
            args = {"lr": lr, "clip_norm": loop.CLIP_NORM}
        else:
            raise ValueError(f"unknown optimizer {name!r}; choose one of "
                             f"{', '.join(loop.OPTIMIZERS)}")
        if schedule.kind == "constant":
            return JointOptim(constructor, args)
        return JointLRScheduler(constructor, args,
                                functools.partial(_torch_scheduler, schedule=schedule))

    def __init__(self, vae: Any, *, estimator: Any, eval_estimator: Any, num_particles: int,
                 optimizer: Any, seed: int, num_data: int, device: str | None = None,
                 schedule: LRSchedule | None = None, valid_particles: int | None = None,
                 kl_weighting: bool = False, free_bits: float = 0.0,
                 example_batch: Any = None, example_labels: Any = None,
                 max_chunk: int | None = None) -> None:
        # example_batch, example_labels, max_chunk: the NumPyro engine's (it traces and
        # compiles); the same signature lets fit build either engine alike. schedule: the
        # one build_optimizer was given (None for a user's optimizer); the scheduler itself
        # comes with the optimizer
        if schedule is not None and schedule.kind != "constant" \
                and not isinstance(optimizer, JointLRScheduler):
            raise TypeError(f"a {schedule.kind!r} learning-rate schedule needs the optimizer "
                            f"PyroEngine.build_optimizer(name, schedule) builds, got "
                            f"{type(optimizer).__name__}")
        move_to_device(vae, device)
        super().__init__(vae, seed=seed, num_data=num_data)
        self.elbo, self.guide = make_elbo(vae, estimator, num_particles,
                                          kl_weighting=kl_weighting, free_bits=free_bits)
        self.optim = optimizer
        self.schedule = schedule
        scheduler = optimizer.scheduler if isinstance(optimizer, JointLRScheduler) else None
        plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        self._per_step = scheduler is not None and not plateau
        self._on_validation = plateau
        self.device_name = str(vae.device)
        cuda = vae.device.type == "cuda"
        self._devices = [vae.device.index or 0] if cuda else []
        self.eval_elbo, self.eval_guide = make_elbo(vae, eval_estimator,
                                                    valid_particles or num_particles)
        with torch.random.fork_rng(devices=self._devices):
            torch.manual_seed(seed)
            self._rng = self._get_rng()
        store = pyro.get_param_store()
        self._own = set(vae.get_params())
        self._extra: set[str] = set()
        self._num_captured = 0
        self._pending: dict[str, torch.Tensor] = {}
        self._recorded: RecordedELBO | str | None = None  # str: why it cannot be recorded
        self.replay: str | None = None
        """None while the steps replay the recorded ELBO (:mod:`ppl_vae.training.pyro_replay`);
        else why the programs run at every step."""
        for name in [n for n in store.keys() if is_baseline_average(n)]:
            del store[name]  # a fresh run starts its baselines at zero

    # -- steps
    def run(self, idx: np.ndarray, kl_weights: np.ndarray | None = None) -> loop.ChunkResult:
        """The steps of the minibatches ``idx`` (``(L, B)`` rows); ``kl_weights``, one float
        per step, go to the ELBO as ``kl_weight`` (None: the ELBO is called without it)."""
        weights = None if kl_weights is None else [float(w) for w in kl_weights]
        idx_t = torch.as_tensor(idx, dtype=torch.long, device=self.vae.device)
        x, c, model, guide, elbo, num_data = self._x, self._c, self.vae.model, self.guide, \
            self.elbo, self.num_data
        chunk = x[idx_t]  # one gather for the chunk's minibatches
        labels = None if c is None else c[idx_t]
        store = pyro.get_param_store()
        losses, times = [], []
        with self._own_rng(), warnings.catch_warnings(), pyro.validation_enabled(False):
            # Pyro warns on each NaN it meets; the guard below reports them with more context
            warnings.filterwarnings("ignore", message="Encountered (NaN|[+-]?Inf)",
                                    category=UserWarning)
            if self._pending:
                self._restore_extras()
            recorded = self._recording(chunk[0], idx_t[0], None if labels is None else labels[0],
                                       weights)
            captured: list[torch.Tensor] | None = None if recorded is None else recorded.params
            for i in range(idx_t.shape[0]):
                ib, xb = idx_t[i], chunk[i]
                cb = None if labels is None else labels[i]
                kw = {} if weights is None else {"kl_weight": weights[i]}
                if recorded is not None:
                    loss_t = recorded(xb, ib, cb)
                    loss_t.backward()
                    loss = loss_t.item()
                elif captured is None:
                    # what SVI.step optimizes: the parameters the step touched, captured once
                    # per chunk (the programs touch the same ones every step)
                    with poutine.trace(param_only=True) as capture:
                        loss = elbo.loss_and_grads(model, guide, xb, ib, num_data, c=cb, **kw)
                    captured = [site["value"].unconstrained()
                                for site in capture.trace.nodes.values()]
                    store_size = len(store)
                else:
                    loss = elbo.loss_and_grads(model, guide, xb, ib, num_data, c=cb, **kw)
                    if len(store) != store_size:  # a parameter was created: capture it too
                        seen = set(captured)
                        captured += [p for _, p in store.named_parameters() if p not in seen]
                        store_size = len(store)
                # baselines' running averages are read without gradient: not optimized
                params = [p for p in captured if p.grad is not None]
                if len(params) != self._num_captured:
                    self._note_extras(params)
                if not (math.isfinite(loss) and _grads_finite(params)):
                    failure = self._diagnose(loss, params, xb, ib, cb, i)
                    _clear_grads(params)
                    return loop.ChunkResult(np.asarray(losses), np.asarray(times), failure)
                self.optim(params)
                if self._per_step:
                    self.optim.step()
                _clear_grads(params)
                losses.append(loss / num_data)
                times.append(time.perf_counter())
        return loop.ChunkResult(np.asarray(losses), np.asarray(times), None)

    def _recording(self, x: torch.Tensor, idx: torch.Tensor, c: torch.Tensor | None,
                   weights: list[float] | None) -> RecordedELBO | None:
        """The recorded ELBO for minibatches like ``x`` (recorded at the first chunk, again if
        the shapes change), or None where the programs must run (:attr:`replay` says why)."""
        elbo = self.elbo
        if type(elbo) is not pyro.infer.Trace_ELBO or elbo.num_particles != 1:
            self.replay = (f"only the single-sample Trace_ELBO is recorded, this run's ELBO is "
                           f"a {type(elbo).__name__} with "
                           f"{getattr(elbo, 'num_particles', '?')} particle(s)")
        elif weights is not None:
            self.replay = "a KL weight per step runs the programs"
        elif self._recorded is None or (not isinstance(self._recorded, str)
                                        and not self._recorded.fits(x, idx, c)):
            self._recorded = record_elbo(self.vae, self.guide, self.num_data, x, idx, c)
        if isinstance(self._recorded, str):
            self.replay = self._recorded
        return None if self.replay is not None else self._recorded

    def evaluate(self, x: np.ndarray, step: int, c: np.ndarray | None = None) -> float:
        """Per-datapoint loss (negative objective) on held-out ``x`` (labels ``c``), own RNG
        stream."""
        vae = self.vae

        def batch_loss(i: int, rows: np.ndarray, idx: np.ndarray, labels: Any) -> float:
            return self.eval_elbo.loss(vae.model, self.eval_guide, vae.as_tensor(rows),
                                       vae.as_index(idx), None, c=vae.as_index(labels))

        with torch.no_grad(), torch.random.fork_rng(devices=self._devices):
            torch.manual_seed(loop.eval_seed(self.seed, step))
            return loop.held_out_loss(x, c, batch_loss)

    def after_validation(self, loss: float) -> None:
        """Feed a validation loss to a ``plateau`` schedule (no-op otherwise). The driver calls
        it after every validation evaluation, the one at step 0 included."""
        if self._on_validation:
            self.optim.step(float(loss))

    def learning_rate(self) -> float:
        """The learning rate the next step uses (NaN if a user's optimizer does not say)."""
        optim = self.optim
        if isinstance(optim, JointOptim):
            return optim.learning_rate
        for torch_optim in getattr(optim, "optim_objs", {}).values():  # a PyroOptim
            torch_optim = getattr(torch_optim, "optimizer", torch_optim)  # a scheduler's
            return float(torch_optim.param_groups[0]["lr"])
        args = getattr(optim, "pt_optim_args", None)
        return float(args["lr"]) if isinstance(args, dict) and "lr" in args else math.nan

    def get_params(self) -> dict[str, np.ndarray]:
        return self.vae.get_params()

    def finalize(self) -> None:
        """The VAE already holds the parameters (updated in place)."""

    # -- checkpoint state
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        skeleton, arrays = encode_tree(self.optim.get_state(), "optim")
        arrays["rng/cpu"] = self._rng["cpu"].numpy()
        if "cuda" in self._rng:
            arrays["rng/cuda"] = self._rng["cuda"].numpy()
        store = pyro.get_param_store()
        extras = sorted(self._extra | {n for n in store.keys() if is_baseline_average(n)})
        for name in extras:
            arrays[f"extra/{name}"] = store[name].detach().cpu().numpy()
        return arrays, {"optim": skeleton, "optim_class": type(self.optim).__name__,
                        "extras": extras}

    def load_state(self, params: dict[str, np.ndarray], arrays: dict[str, np.ndarray],
                   meta: dict[str, Any]) -> None:
        saved = meta.get("optim_class")
        if saved is not None and saved != type(self.optim).__name__:
            # e.g. a learning-rate schedule added or removed: the states do not translate
            raise CheckpointError(f"the checkpoint's optimizer state is a {saved}'s, this "
                                  f"run's optimizer is a {type(self.optim).__name__}; resume "
                                  f"with the original optimizer and learning-rate schedule")
        self.vae.set_params(params)
        self.optim.set_state(decode_tree(meta["optim"], arrays, {"torch": _tensor}))
        self._rng = {"cpu": _tensor(arrays["rng/cpu"])}
        if self._devices:
            self._rng["cuda"] = _tensor(arrays["rng/cuda"])
        self._pending = {name: _tensor(arrays[f"extra/{name}"]).to(self.vae.device)
                         for name in meta["extras"]}

    # -- helpers
    def _get_rng(self) -> dict[str, torch.Tensor]:
        rng = {"cpu": torch.get_rng_state()}
        if self._devices:
            rng["cuda"] = torch.cuda.get_rng_state(self._devices[0])
        return rng

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=self._devices):
            torch.set_rng_state(self._rng["cpu"])
            if self._devices:
                torch.cuda.set_rng_state(self._rng["cuda"], self._devices[0])
            try:
                yield
            finally:
                self._rng = self._get_rng()

    def _note_extras(self, params: list[torch.Tensor]) -> None:
        store = pyro.get_param_store()
        self._extra |= {store.param_name(p) for p in params} - self._own - {None}
        self._num_captured = len(params)

    def _restore_extras(self) -> None:
        """Put back an estimator's own state saved in the checkpoint: a baseline's averages
        into the param store, a neural baseline's network into the ELBO that owns it."""
        store = pyro.get_param_store()
        nets = {}
        for name, value in self._pending.items():
            if is_baseline_average(name):
                store[name] = value
            else:
                nets[name] = value
        if nets:
            self.elbo.load_networks(nets)
        self._extra |= set(nets)
        self._pending = {}

    def _diagnose(self, loss: float, params: list[torch.Tensor], xb: torch.Tensor,
                  ib: torch.Tensor, cb: torch.Tensor | None, index: int) -> loop.StepFailure:
        store = pyro.get_param_store()
        params_ok = {store.param_name(p) or f"?{i}": bool(torch.isfinite(p).all())
                     and bool(torch.isfinite(p.grad).all()) for i, p in enumerate(params)}
        with torch.no_grad():
            guide_tr = poutine.trace(self.guide).get_trace(xb, ib, self.num_data, c=cb)
            model_tr = poutine.trace(poutine.replay(self.vae.model, trace=guide_tr)) \
                .get_trace(xb, ib, self.num_data, c=cb)
        sites = loop.sites_finite(self.vae.ops, {"guide": guide_tr.nodes.items(),
                                            "model": model_tr.nodes.items()})
        return loop.step_failure(index, loss, params_ok, sites, xb.abs().max())


def _clear_grads(params: list[torch.Tensor]) -> None:
    # None, not zeros (pyro.infer.util.zero_grads): the next backward then writes the gradient
    # instead of allocating zeros and adding to them; 0 + g == g, so the values are the same
    for p in params:
        p.grad = None


def _grads_finite(params: list[torch.Tensor]) -> bool:
    if not params:
        return True
    # one fused pass over every gradient (GradScaler's check; multiplying by 1 changes no
    # bit); one host sync per step
    found = torch.zeros(1, device=params[0].device)
    torch._amp_foreach_non_finite_check_and_unscale_(
        [p.grad for p in params], found, torch.ones(1, device=params[0].device))
    return not bool(found)


def _tensor(array: np.ndarray) -> torch.Tensor:
    # a writable copy: safetensors hands out read-only buffers, which torch warns about
    return torch.from_numpy(np.array(array))
