r"""Gradient variance of ELBO estimators at fixed parameters, on both backends.

At fixed parameters, :func:`measure_gradients` draws N independent gradient estimates of the
loss (−ELBO, or −IWAE bound for ``iwae``/``dreg``) per estimator and number of particles K,
and keeps per parameter coordinate i the mean ḡ_i, the variance s_i² and the signal-to-noise
ratio

.. math:: \mathrm{SNR}_i = |ḡ_i| / s_i \quad\text{(Rainforth et al. 2018)},

plus per draw the squared gradient norm of each parameter tensor. :func:`summarize` turns
those into a tidy table per coordinate, parameter tensor or parameter group (the flat name's
prefix: ``encoder``, ``decoder``, ``prior``, ``likelihood``, ``codes``; ``other`` for names
without a dot): total variance (the trace Σ_i s_i²), quantiles of the coordinates' SNR,
‖ḡ‖, E‖g‖, and the wall time per estimate so that cost-adjusted variance (variance × time)
can be compared. :func:`gradient_variance` does both.

Conventions
-----------
* Gradients are taken w.r.t. the *unconstrained* parameters, which the optimizers of both
  libraries update (identical to the parameters for our VAEs, which have no constraints).
* Pyro draws are sequential (``loss_and_grads``); NumPyro draws are ``jax.vmap``-ed over
  PRNG keys in chunks (bounded memory) and ``jax.jit``-compiled; compile time is excluded
  from ``seconds_per_draw``, which for NumPyro is the vectorized cost per draw.
* ``score-baseline`` is stateful. Its decaying average (and, with ``neural=True``, the
  network) is first *warmed up* for ``baseline_warmup`` draws at the fixed parameters
  (average updated, network trained with Adam), then *frozen* while the N draws are taken.
  The measured draws are then i.i.d. and each is unbiased, as the baseline does not depend
  on them. Baseline parameters are never part of the measurement. As warm-up and draws see
  the same arguments (minibatch), a per-datapoint average is tuned to those datapoints: an
  optimistic case next to training, where the minibatch changes every step.
* Moments are accumulated in float64 about a pilot mean (the first chunk's), so nothing of
  size N × (number of parameters) is stored. ``variance_se`` is the standard error of the
  variance: per coordinate √((m₄ − s⁴)/N); per tensor or group the standard deviation over
  draws of the squared deviation ‖g − ḡ‖², divided by √N (deviations about the pilot mean).

References
----------
Rainforth, Kosiorek, Le, Maddison, Igl, Wood & Teh (2018), Tighter variational bounds are
not necessarily better. Roeder, Wu & Duvenaud (2017), Sticking the landing. Tucker, Lawson,
Gu & Maddison (2018), Doubly reparameterized gradient estimators for Monte Carlo objectives.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ppl_vae.estimators import BASELINE_PREFIX, get_estimator, is_baseline_average

LEVELS = ("coordinate", "param", "group")
_CHUNK_BUDGET = 2**22
"""Gradient floats per vectorized chunk (16 MiB in float32): about 6 draws of the 784-400-20
MLP VAE, near the fastest chunk measured on 2 CPU cores (an earlier benchmark script)."""


def param_group(name: str) -> str:
    """The group of a flat parameter name: its prefix before the first ".", else "other"."""
    prefix, dot, _ = name.partition(".")
    return prefix if dot and prefix else "other"


@dataclass
class GradientMoments:
    """Moments of N gradient draws of one estimator at one number of particles.

    ``mean``, ``variance`` (and ``variance_se`` when fourth moments were kept) are flat over
    all coordinates, in the order of ``names`` (sorted); ``dev2[n, t]`` and ``norm2[n, t]``
    are, for draw n and tensor t, Σ_i (g_ni − c_i)² (c the pilot mean) and Σ_i g_ni².
    """

    backend: str
    estimator: str
    particles: int
    seed: int
    num_draws: int
    seconds_per_draw: float
    names: list[str]
    shapes: list[tuple[int, ...]]
    groups: list[str]
    mean: np.ndarray
    variance: np.ndarray
    variance_se: np.ndarray | None
    dev2: np.ndarray
    norm2: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        return np.cumsum([0] + [math.prod(s) for s in self.shapes])


class _Moments:
    """Streaming moments about a pilot mean, fed (C, P) chunks of draws."""

    def __init__(self, offsets: np.ndarray, fourth: bool) -> None:
        self.starts = offsets[:-1]
        self.fourth = fourth
        self.shift: np.ndarray | None = None
        self.count = 0
        self.sums: list[np.ndarray] = []
        self.dev2: list[np.ndarray] = []
        self.norm2: list[np.ndarray] = []

    def add(self, g: np.ndarray) -> None:
        if self.shift is None:
            self.shift = g.mean(0, dtype=np.float64).astype(g.dtype)
            self.sums = [np.zeros(g.shape[1]) for _ in range(4 if self.fourth else 2)]
        y = g - self.shift
        y2 = y * y
        powers = [y, y2] + ([y2 * y, y2 * y2] if self.fourth else [])
        for total, power in zip(self.sums, powers, strict=True):
            total += power.sum(0, dtype=np.float64)
        self.dev2.append(np.add.reduceat(y2, self.starts, axis=1, dtype=np.float64))
        self.norm2.append(np.add.reduceat(g * g, self.starts, axis=1, dtype=np.float64))
        self.count += g.shape[0]

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray,
                              np.ndarray]:
        n = self.count
        raw = [s / n for s in self.sums]  # E[y^k] about the shift
        centre = raw[0]
        variance = np.maximum(raw[1] - centre**2, 0.0) * n / (n - 1)
        se = None
        if self.fourth:
            m4 = raw[3] - 4 * centre * raw[2] + 6 * centre**2 * raw[1] - 3 * centre**4
            se = np.sqrt(np.maximum(m4 - variance**2, 0.0) / n)
        mean = self.shift.astype(np.float64) + centre
        return mean, variance, se, np.concatenate(self.dev2), np.concatenate(self.norm2)


# ----------------------------------------------------------------------------- backends


def _infer_backend(model: Any, args: tuple) -> str:
    owner = getattr(model, "__self__", None)
    if getattr(owner, "backend", None) in _GRADIENTS:
        return owner.backend
    for a in args:
        module = type(a).__module__
        if module.startswith("torch"):
            return "pyro"
        if module.startswith(("jax", "jaxlib")):
            return "numpyro"
    raise ValueError("cannot tell the backend from the model or its arguments; pass "
                     "backend='pyro' or backend='numpyro'")


class _PyroGradients:
    """Sequential gradient draws of a Pyro ELBO w.r.t. the model's and guide's parameters."""

    fixed_shape = False
    """Draws come one by one: a chunk may be any size."""

    def __init__(self, model: Any, guide: Any, args: tuple, kwargs: dict, estimator: Any,
                 particles: int, seed: int) -> None:
        import pyro
        from pyro import poutine

        from ppl_vae.models import program_elbo

        self.pyro = pyro
        store = pyro.get_param_store()
        for name in [k for k in store.keys() if k.startswith(BASELINE_PREFIX)]:
            del store[name]  # state of an earlier configuration
        pyro.set_rng_seed(seed)
        self.elbo, self.guide = program_elbo(model, guide, estimator, particles, "pyro", args,
                                             kwargs)
        with poutine.block(), poutine.trace(param_only=True) as tr:
            guide(*args, **kwargs)
            model(*args, **kwargs)
        sites = {name: site for name, site in tr.trace.nodes.items()
                 if not name.startswith(BASELINE_PREFIX)}
        self.names = sorted(sites)
        self.params = [sites[n]["value"].unconstrained() for n in self.names]
        self.model, self.args, self.kwargs = model, args, kwargs
        self.estimator = estimator
        self.frozen: dict[str, Any] = {}
        self.checked = False

    def _baseline_params(self) -> list[Any]:
        store = self.pyro.get_param_store()
        return [store.get_param(k).unconstrained() for k in store.keys()
                if k.startswith(BASELINE_PREFIX) and not is_baseline_average(k)]

    def _step(self) -> None:
        for p in self.params + self._baseline_params():
            p.grad = None
        store = self.pyro.get_param_store()
        for name, value in self.frozen.items():
            store[name] = value
        self.elbo.loss_and_grads(self.model, self.guide, *self.args, **self.kwargs)

    def warmup(self, steps: int, lr: float) -> None:
        import torch

        if not self.estimator.stateful or steps == 0:
            return
        optimizer = None
        for _ in range(steps):
            self._step()
            if self.estimator.neural:
                optimizer = optimizer or torch.optim.Adam(self._baseline_params(), lr=lr)
                optimizer.step()
        store = self.pyro.get_param_store()
        self.frozen = {k: store[k].detach().clone() for k in store.keys()
                       if is_baseline_average(k)}

    def values(self) -> list[Any]:
        return [p.detach() for p in self.params]

    def draws(self, count: int, offset: int = 0, stream: int = 2) -> tuple[np.ndarray, float]:
        """``count`` draws from torch's generator (``offset`` and ``stream`` are for the
        signature NumPyro's keyed draws need). Every draw sees the same arguments, so Pyro's
        argument and support checks (if enabled) run in the first call only: the rest would
        repeat them on the same values (~10% of a draw of the MLP VAE)."""
        import torch

        checks = self.pyro.validation_enabled(False) if self.checked \
            else contextlib.nullcontext()
        grads, seconds = [], 0.0
        with checks:
            for _ in range(count):
                start = time.perf_counter()
                self._step()
                grads.append(torch.cat([p.grad.reshape(-1) if p.grad is not None
                                        else torch.zeros_like(p).reshape(-1)
                                        for p in self.params]))
                seconds += time.perf_counter() - start
        self.checked = True
        return torch.stack(grads).detach().cpu().numpy(), seconds


class _NumPyroGradients:
    """``jax.vmap``-ed, ``jax.jit``-ed gradient draws of a NumPyro ELBO."""

    fixed_shape = True
    """Every chunk has one size, so the vectorized draw compiles once."""

    def __init__(self, model: Any, guide: Any, args: tuple, kwargs: dict, estimator: Any,
                 particles: int, seed: int) -> None:
        import jax
        import jax.numpy as jnp
        from numpyro.distributions import biject_to, constraints
        from numpyro.handlers import block, replay, trace
        from numpyro.handlers import seed as seed_handler

        from ppl_vae.models import program_elbo

        elbo, guide_e = program_elbo(model, guide, estimator, particles, "numpyro", args, kwargs)
        with block():
            guide_trace = trace(seed_handler(guide, 0)).get_trace(*args, **kwargs)
            model_trace = trace(replay(seed_handler(model, 0), guide_trace)).get_trace(
                *args, **kwargs)
            wrapped_trace = trace(seed_handler(guide_e, seed)).get_trace(*args, **kwargs)
        sites = {name: site for tr in (model_trace, guide_trace) for name, site in tr.items()
                 if site["type"] == "param"}
        self.names = sorted(sites)
        self.transforms = {n: biject_to(sites[n]["kwargs"].get("constraint", constraints.real))
                           for n in self.names}
        self.unconstrained = {n: self.transforms[n].inv(sites[n]["value"]) for n in self.names}
        self.nets = {n: s["value"] for n, s in wrapped_trace.items()
                     if s["type"] == "param" and n not in sites}
        self.state = {n: s["value"] for n, s in wrapped_trace.items() if s["type"] == "mutable"}
        self.estimator = estimator
        stateful = estimator.stateful

        def loss(u: dict, nets: dict, state: dict, key: Any) -> tuple[Any, dict]:
            params = {**{n: self.transforms[n](v) for n, v in u.items()}, **nets, **state}
            if stateful:
                out = elbo.loss_with_mutable_state(key, params, model, guide_e, *args, **kwargs)
                return out["loss"], out["mutable_state"]
            return elbo.loss(key, params, model, guide_e, *args, **kwargs), state

        def flat_grad(u: dict, nets: dict, state: dict, key: Any) -> Any:
            g = jax.grad(lambda u_: loss(u_, nets, state, key)[0])(u)
            return jnp.concatenate([jnp.reshape(g[n], (-1,)) for n in self.names])

        self._loss = loss
        self._chunk = jax.jit(jax.vmap(flat_grad, in_axes=(None, None, None, 0)))
        self.key = jax.random.PRNGKey(seed)
        self.jax = jax

    def warmup(self, steps: int, lr: float) -> None:
        if not self.estimator.stateful or steps == 0:
            return
        import optax

        jax = self.jax
        optimizer = optax.adam(lr)

        @jax.jit
        def step(nets: dict, state: dict, opt_state: Any, key: Any):
            (_, new_state), grads = jax.value_and_grad(
                lambda n: self._loss(self.unconstrained, n, state, key), has_aux=True)(nets)
            updates, opt_state = optimizer.update(grads, opt_state, nets)
            return optax.apply_updates(nets, updates), new_state, opt_state

        nets, state, opt_state = self.nets, self.state, optimizer.init(self.nets)
        for key in jax.random.split(jax.random.fold_in(self.key, 1), steps):
            nets, state, opt_state = step(nets, state, opt_state, key)
        self.nets, self.state = nets, state

    def values(self) -> list[Any]:
        return [self.unconstrained[n] for n in self.names]

    def draws(self, count: int, offset: int = 0, stream: int = 2) -> tuple[np.ndarray, float]:
        """``count`` draws with keys folded from (``stream``, ``offset``)."""
        jax = self.jax
        keys = jax.random.split(
            jax.random.fold_in(jax.random.fold_in(self.key, stream), offset), count)
        start = time.perf_counter()
        g = jax.block_until_ready(self._chunk(self.unconstrained, self.nets, self.state, keys))
        seconds = time.perf_counter() - start
        return np.asarray(g), seconds


# ----------------------------------------------------------------------------- measurement


_GRADIENTS: dict[str, type] = {"pyro": _PyroGradients, "numpyro": _NumPyroGradients}
"""Each backend's gradient draws: torch autograd one draw at a time, or ``jax.grad`` vmapped."""


def _as_list(value: Any) -> list:
    return [value] if isinstance(value, str | int) or not isinstance(value, Sequence) \
        else list(value)


def measure_gradients(model: Any, guide: Any, *args: Any, estimators: Any = ("reparam", "score"),
                      num_draws: int = 1000, num_particles: int | Sequence[int] = 1,
                      backend: str | None = None, seed: int = 0,
                      model_kwargs: dict | None = None, chunk_size: int | None = None,
                      coordinate_se: bool = False, baseline_warmup: int = 200,
                      baseline_lr: float = 1e-2,
                      groups: Callable[[str], str] = param_group,
                      progress: Callable[[str], None] | None = None,
                      on_draws: Callable[[int], None] | None = None) -> list[GradientMoments]:
    """Draw ``num_draws`` gradients per (estimator, particles) at the current parameters.

    Parameters
    ----------
    model, guide : a Pyro or NumPyro program pair (a ppl_vae VAE's ``.model`` / ``.guide``,
        or any other), called as ``model(*args, **model_kwargs)``.
    estimators : names or instances from :mod:`ppl_vae.estimators`.
    num_particles : K, or a sequence of K values.
    backend : "pyro" or "numpyro"; inferred from the VAE or the argument types when omitted.
    seed : seeds every configuration's draws (the same seed for each).
    chunk_size : NumPyro draws per vectorized chunk; by default about 2²² gradient floats.
    coordinate_se : also keep third and fourth moments, for per-coordinate standard errors.
    baseline_warmup, baseline_lr : warm-up draws (and Adam step size for a neural baseline)
        of ``score-baseline`` before its state is frozen; see the module notes.
    groups : maps a flat parameter name to its group.
    progress : called with a line per configuration.
    on_draws : called with the number of draws each vectorized call added (progress bars).
    """
    if not (isinstance(num_draws, int) and num_draws >= 2):
        raise ValueError(f"num_draws must be an integer >= 2, got {num_draws!r}")
    particles_list = [int(k) for k in _as_list(num_particles)]
    if any(k < 1 for k in particles_list):
        raise ValueError(f"num_particles must be >= 1, got {particles_list}")
    backend = backend or _infer_backend(model, args)
    if backend not in _GRADIENTS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(_GRADIENTS)}")
    kwargs = dict(model_kwargs or {})
    results = []
    for name in _as_list(estimators):
        estimator = get_estimator(name)
        for particles in particles_list:
            cls = _GRADIENTS[backend]
            grads = cls(model, guide, args, kwargs, estimator, particles, seed)
            grads.warmup(baseline_warmup, baseline_lr)
            moments = _measure(grads, num_draws, particles, chunk_size, coordinate_se,
                               on_draws)
            results.append(GradientMoments(
                backend=backend, estimator=estimator.label, particles=particles, seed=seed,
                num_draws=num_draws, seconds_per_draw=moments[0], names=grads.names,
                shapes=[tuple(np.shape(p)) for p in grads.values()],
                groups=[groups(n) for n in grads.names], mean=moments[1], variance=moments[2],
                variance_se=moments[3], dev2=moments[4], norm2=moments[5]))
            if progress is not None:
                progress(f"{backend} {estimator.label} K={particles}: "
                         f"{1.0 / moments[0]:.0f} draws/s")
    return results


def _chunk(num_draws: int, num_params: int, particles: int, chunk_size: int | None) -> int:
    """Draws per vectorized call: ``chunk_size``, or about :data:`_CHUNK_BUDGET` floats."""
    return chunk_size or max(2, min(num_draws, _CHUNK_BUDGET // max(num_params * particles, 1)))


def draws_per_call(backend: str, vae: Any, num_draws: int, particles: int = 1,
                   chunk_size: int | None = None) -> int:
    """How many gradient draws one call computes together (1 on Pyro: sequential)."""
    if not _GRADIENTS[backend].fixed_shape:
        return 1
    num_params = sum(int(np.prod(np.shape(v))) for v in vae.get_params().values())
    return _chunk(num_draws, num_params, particles, chunk_size)


def _measure(grads: Any, num_draws: int, particles: int, chunk_size: int | None,
             coordinate_se: bool, on_draws: Callable[[int], None] | None) -> tuple:
    sizes = [int(np.prod(np.shape(p))) for p in grads.values()]
    accumulator = _Moments(np.cumsum([0] + sizes), coordinate_se)
    chunk = _chunk(num_draws, sum(sizes), particles, chunk_size)
    # first call (lazy initialisation, compilation) excluded from timing
    grads.draws(chunk if grads.fixed_shape else 1, 0, stream=3)
    seconds, computed, done = 0.0, 0, 0
    while done < num_draws:
        size = chunk if grads.fixed_shape else min(chunk, num_draws - done)
        g, dt = grads.draws(size, done)
        seconds += dt
        computed += g.shape[0]
        g = g[: num_draws - done]
        if not np.all(np.isfinite(g)):
            raise FloatingPointError("a gradient draw is not finite; check the parameters and "
                                     "the data (or use float64)")
        accumulator.add(g)
        done += g.shape[0]
        if on_draws is not None:
            on_draws(g.shape[0])
    return (seconds / computed, *accumulator.result())


# ----------------------------------------------------------------------------- tables


def _snr(mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(mean) / np.sqrt(variance)


def _unit_rows(m: GradientMoments, by: str) -> list[dict]:
    offsets = m.offsets
    if by == "param":
        units = [(name, group, [t]) for t, (name, group) in enumerate(zip(m.names, m.groups,
                                                                          strict=True))]
    else:
        units = [(None, g, [t for t, gt in enumerate(m.groups) if gt == g])
                 for g in dict.fromkeys(m.groups)]
    rows = []
    for name, group, tensors in units:
        idx = np.concatenate([np.arange(offsets[t], offsets[t + 1]) for t in tensors])
        snr = _snr(m.mean[idx], m.variance[idx])
        snr = snr[~np.isnan(snr)]
        # sample quantiles without interpolation: exact-gradient coordinates have SNR = inf
        q = (np.quantile(snr, [0.05, 0.25, 0.5, 0.75, 0.95], method="inverted_cdf")
             if snr.size else np.full(5, np.nan))
        dev2 = m.dev2[:, tensors].sum(1)
        variance = float(m.variance[idx].sum())
        row = {"group": group} if name is None else {"param": name, "group": group}
        rows.append({**row, "size": int(idx.size), "variance": variance,
                     "variance_se": float(dev2.std(ddof=1) / math.sqrt(m.num_draws)),
                     "snr": q[2], "snr_q05": q[0], "snr_q25": q[1], "snr_q75": q[3],
                     "snr_q95": q[4],
                     "mean_norm": float(np.sqrt(np.sum(m.mean[idx] ** 2))),
                     "grad_norm": float(np.sqrt(m.norm2[:, tensors].sum(1)).mean()),
                     "seconds_per_draw": m.seconds_per_draw,
                     "variance_x_seconds": variance * m.seconds_per_draw})
    return rows


def _coordinate_frame(m: GradientMoments) -> pd.DataFrame:
    offsets = m.offsets
    names = np.repeat(m.names, np.diff(offsets))
    index = np.concatenate([np.arange(n) for n in np.diff(offsets)])
    return pd.DataFrame({
        "param": names, "index": index, "group": np.repeat(m.groups, np.diff(offsets)),
        "mean": m.mean, "variance": m.variance,
        "variance_se": m.variance_se if m.variance_se is not None else np.nan,
        "snr": _snr(m.mean, m.variance), "seconds_per_draw": m.seconds_per_draw,
        "variance_x_seconds": m.variance * m.seconds_per_draw})


def summarize(moments: Sequence[GradientMoments], by: str = "param") -> pd.DataFrame:
    """A tidy table of gradient moments per ``by`` in ("coordinate", "param", "group").

    Columns: backend, estimator, particles, num_draws, seed, then the unit (``param`` and
    ``index`` per coordinate; ``param`` per tensor; ``group``), and
    ``variance`` (per tensor/group: the trace Σ_i s_i²), ``variance_se``, ``snr`` (per
    tensor/group: the median over coordinates, with quantiles ``snr_q05`` ... ``snr_q95``;
    coordinates whose gradient is always exactly zero are left out, those estimated without
    noise have SNR = inf), ``mean`` (per
    coordinate) or ``mean_norm`` = ‖ḡ‖ and ``grad_norm`` = E‖g‖, ``seconds_per_draw`` and
    ``variance_x_seconds`` (cost-adjusted variance).
    """
    if by not in LEVELS:
        raise ValueError(f"by must be one of {', '.join(LEVELS)}; got {by!r}")
    frames = []
    for m in moments:
        frame = (_coordinate_frame(m) if by == "coordinate"
                 else pd.DataFrame(_unit_rows(m, by)))
        head = {"backend": m.backend, "estimator": m.estimator, "particles": m.particles,
                "num_draws": m.num_draws, "seed": m.seed}
        frames.append(frame.assign(**head)[[*head, *frame.columns]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def gradient_variance(model: Any, guide: Any, *args: Any, estimators: Any = ("reparam", "score"),
                      num_draws: int = 1000, num_particles: int | Sequence[int] = 1,
                      backend: str | None = None, seed: int = 0, by: str = "param",
                      **options: Any) -> pd.DataFrame:
    """Gradient mean, variance and SNR of each estimator at the current parameters.

    ``gradient_variance(vae.model, vae.guide, x, estimators=["score", "reparam"])`` returns a
    tidy DataFrame (see :func:`summarize`); ``options`` go to :func:`measure_gradients`
    (``model_kwargs``, ``chunk_size``, ``baseline_warmup``, ``groups``, ...).
    """
    if by not in LEVELS:
        raise ValueError(f"by must be one of {', '.join(LEVELS)}; got {by!r}")
    options.setdefault("coordinate_se", by == "coordinate")
    moments = measure_gradients(model, guide, *args, estimators=estimators, num_draws=num_draws,
                                num_particles=num_particles, backend=backend, seed=seed,
                                **options)
    return summarize(moments, by)
