"""The backend-independent training driver behind :func:`ppl_vae.training.fit`.

The driver cuts the run into chunks of SVI steps — at most ``max_chunk`` steps, never across an
epoch end, an evaluation or a checkpoint — and hands each chunk's minibatch indices to a backend
*engine* (:mod:`ppl_vae.training.pyro_engine`, :mod:`ppl_vae.training.numpyro_engine`). Between
chunks it records the history, evaluates held-out data, writes checkpoints and updates the
progress bar. Chunk boundaries depend only on the global step, so a resumed run replays the
chunks of an uninterrupted one.

An engine provides ``set_epoch_data(x, c)``, ``run(idx, kl_weights) -> ChunkResult``
(stopping *before* a step whose loss or gradients are not finite; ``kl_weights`` one KL weight
per step, or None), ``evaluate(x, step, c)``, ``after_validation(loss)`` (a reduce-on-plateau
schedule's update), ``get_params()``, ``finalize()``, ``state()`` and
``load_state(params, arrays, meta)``; ``c`` are the class labels of a conditioned model (None
otherwise), indexed by the same minibatch rows as ``x``.
What both engines share is here too: the optimizers by name (each engine maps them to its
library's), the held-out loss in batches (:func:`held_out_loss`) and the report of a bad step
(:func:`step_failure`).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ppl_vae.io import arrays_bytes
from ppl_vae.runs.checkpoints import Checkpoint, write_checkpoint
from ppl_vae.runs.layout import CHECKPOINT_DIR, HISTORY_FILE, PARAMS_FILE
from ppl_vae.training import batches
from ppl_vae.training.schedules import KLWeight
from ppl_vae.training.selection import Selection

HISTORY_COLUMNS = ("step", "epoch", "split", "loss", "wall_time", "selected")
"""The history's columns; ``selected`` is True on the validation row of the step whose
parameters the run keeps (:mod:`ppl_vae.training.selection`)."""
OPTIMIZERS = ("adam", "clipped-adam")
"""Optimizers by name: Adam, and Adam on gradients clipped elementwise to ±:data:`CLIP_NORM`
(``pyro.optim.ClippedAdam``; ``optax.chain(optax.clip, optax.adam)``); each engine's
``OPTIMIZERS`` builds them from a learning rate."""
CLIP_NORM = 10.0
ADAM_BETA1 = 0.9
"""Adam's first-moment decay, the default of both backends' Adam (torch and optax)."""
EVAL_BATCH = 500
"""Held-out datapoints per evaluation batch."""


@dataclass(frozen=True)
class StepFailure:
    """A step whose loss or gradients were not finite; the engine stopped before it."""

    index: int
    loss: float
    sites: tuple[str, ...]
    parameters: tuple[str, ...]
    batch_max_abs: float


class Engine:
    """What both engines keep alike: the model, the seed, the dataset size, and the epoch's
    training data (and labels) on the engine's device, converted once per epoch array."""

    OPTIMIZERS: dict[str, Any]

    def __init__(self, vae: Any, *, seed: int, num_data: int) -> None:
        self.vae, self.seed, self.num_data = vae, seed, num_data
        self._x: Any = None
        self._c: Any = None
        self._x_source: np.ndarray | None = None

    def _on_device(self, array: Any) -> Any:
        """A backend array on the engine's device (where the VAE put it, by default)."""
        return array

    def set_epoch_data(self, x: np.ndarray, c: np.ndarray | None = None) -> None:
        if x is not self._x_source:
            self._x = self._on_device(self.vae.as_tensor(x))
            self._c = None if c is None else self._on_device(self.vae.as_index(c))
            self._x_source = x


def step_failure(index: int, loss: float, params_ok: dict[str, Any], sites_ok: dict[str, Any],
                 batch_max_abs: Any) -> StepFailure:
    """The report of a bad step from the finiteness of each parameter (value and gradient)
    and of each sample site (value and log-density, labelled ``"name (role)"``)."""
    return StepFailure(index=index, loss=loss,
                       sites=tuple(name for name, ok in sites_ok.items() if not bool(ok)),
                       parameters=tuple(name for name, ok in params_ok.items() if not bool(ok)),
                       batch_max_abs=float(batch_max_abs))


def sites_finite(ops: Any, traces: dict[str, Any]) -> dict[str, Any]:
    """Whether each sample site's value and log-density are finite, labelled ``"name (role)"``,
    for ``{role: [(name, site), ...]}`` of the guide's and the model's traces."""
    return {f"{name} ({role})": ops.isfinite(site["value"]).all()
            & ops.isfinite(site["fn"].log_prob(site["value"])).all()
            for role, sites in traces.items() for name, site in sites
            if site["type"] == "sample"}


def held_out_loss(x: np.ndarray, c: np.ndarray | None,
                  batch_loss: Callable[[int, np.ndarray, np.ndarray, Any], float]) -> float:
    """Per-datapoint loss of held-out ``x`` (labels ``c``) in batches of :data:`EVAL_BATCH`:
    ``batch_loss(i, rows, indices, labels)`` is the summed loss of batch ``i``."""
    total = 0.0
    for i, start in enumerate(range(0, len(x), EVAL_BATCH)):
        rows = x[start:start + EVAL_BATCH]
        total += batch_loss(i, rows, np.arange(start, start + len(rows)),
                            None if c is None else c[start:start + EVAL_BATCH])
    return total / len(x)


@dataclass(frozen=True)
class ChunkResult:
    """Per-datapoint losses and finish times (``perf_counter``) of the completed steps."""

    losses: np.ndarray
    times: np.ndarray
    failure: StepFailure | None


DIVERGENCE_FACTOR = 100.0
"""Default of the divergence guard: training stops at the first step whose training loss
exceeds ``m + DIVERGENCE_FACTOR * max(|m|, 1)`` nats, ``m`` the lowest training loss so far
(a NaN is caught separately, before the step)."""


class TrainingStoppedError(FloatingPointError):
    """Training stopped on a bad step; the message says where and what to try.

    Attributes: ``step`` (1-based, the bad step), ``checkpoint`` (the last good checkpoint
    kept on disk, or None) and ``history`` (up to the step before the bad one).
    """

    def __init__(self, message: str, *, step: int, checkpoint: Path | None,
                 history: pd.DataFrame) -> None:
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint
        self.history = history


class NonFiniteLossError(TrainingStoppedError):
    """A non-finite loss or gradient; ``sites`` and ``parameters`` name where it appeared."""

    def __init__(self, message: str, *, sites: tuple[str, ...], parameters: tuple[str, ...],
                 **common: Any) -> None:
        super().__init__(message, **common)
        self.sites = sites
        self.parameters = parameters


class DivergenceError(TrainingStoppedError):
    """A finite loss past the divergence guard's bound (:data:`DIVERGENCE_FACTOR`)."""


@dataclass(frozen=True)
class Plan:
    """What to run: steps, batch size, seed, and when to evaluate and checkpoint."""

    total_steps: int
    batch_size: int
    steps_per_epoch: int
    seed: int
    eval_every: int | None
    checkpoint_every: int | None
    max_chunk: int
    learning_rate: float | None = None
    divergence_factor: float | None = DIVERGENCE_FACTOR
    kl_weight: KLWeight | None = None

    def kl_weights(self, step: int, end: int) -> np.ndarray | None:
        """The KL weights of steps ``step .. end - 1``, or None where the objective has none."""
        return None if self.kl_weight is None else self.kl_weight.weights(step, end)

    def chunk_end(self, step: int) -> int:
        """The step after which the chunk starting at ``step`` stops."""
        epoch_start = step - step % self.steps_per_epoch
        ends = [self.total_steps, epoch_start + self.steps_per_epoch,
                epoch_start + ((step - epoch_start) // self.max_chunk + 1) * self.max_chunk]
        for every in (self.eval_every, self.checkpoint_every):
            if every:
                ends.append((step // every + 1) * every)
        return min(ends)

    def is_due(self, step: int, every: int | None) -> bool:
        return step == self.total_steps or bool(every and step % every == 0)


def eval_seed(seed: int, step: int) -> int:
    """Seed of the evaluation at ``step``: independent of the training stream."""
    return int(np.random.SeedSequence([seed, step, 2]).generate_state(1)[0])


@dataclass
class History:
    """Tidy training history: one row per step (train) and per evaluation (valid)."""

    frames: list[pd.DataFrame] = field(default_factory=list)

    @classmethod
    def from_csv(cls, text: str) -> History:
        if not text.strip():
            return cls()
        return cls([pd.read_csv(io.StringIO(text)).drop(columns="selected", errors="ignore")])

    def add(self, steps: np.ndarray, epochs: np.ndarray, split: str, losses: np.ndarray,
            wall: np.ndarray) -> None:
        if len(steps):
            self.frames.append(pd.DataFrame({
                "step": np.asarray(steps, dtype=np.int64), "epoch": np.asarray(epochs, np.int64),
                "split": split, "loss": np.asarray(losses, dtype=np.float64),
                "wall_time": np.asarray(wall, dtype=np.float64)}))

    def _rows(self) -> pd.DataFrame:
        if not self.frames:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                                 zip(HISTORY_COLUMNS, ("int64", "int64", "str", "float64",
                                                       "float64"), strict=False)})
        frame = pd.concat(self.frames, ignore_index=True)
        self.frames = [frame]
        return frame

    def frame(self, selected_step: int | None = None) -> pd.DataFrame:
        """The history, its ``selected`` column marking the validation row of
        ``selected_step`` (the last row of that step where it has no validation row)."""
        frame = self._rows().copy()
        mark = frame["step"] == selected_step
        if (mark & (frame["split"] == "valid")).any():
            mark &= frame["split"] == "valid"
        elif mark.any():
            mark &= frame.index == frame.index[mark][-1]
        frame["selected"] = mark.to_numpy()
        return frame

    def to_csv(self, selected_step: int | None = None) -> str:
        # repr-precision floats so a resumed history equals the uninterrupted one
        return self.frame(selected_step).to_csv(index=False, float_format="%.17g")


@dataclass(frozen=True)
class TrainingOutcome:
    """What :func:`run_training` returns: the history (its ``selected`` column marks the kept
    step), the steps trained, the seconds of training and the selection."""

    history: pd.DataFrame
    steps: int
    seconds: float
    selection: Selection


def run_training(engine: Any, data: batches.TrainingData, plan: Plan, selection: Selection, *,
                 run_dir: Path | None = None, start: Checkpoint | None = None,
                 progress: bool = True, description: str = "",
                 state_extra: dict[str, Any] | None = None,
                 commit: Callable[[], Path] | None = None,
                 on_checkpoint: Callable[[Path, int, Selection], None] | None = None
                 ) -> TrainingOutcome:
    """Run ``plan`` from step 0 or from ``start`` until its last step or until ``selection``
    stops it (patience); at the end the engine's model holds the parameters ``selection``
    keeps.

    ``commit``, when given, is called once the first checkpoint is on disk and returns the
    run directory to write to from then on (a new run built aside moves into place).
    ``on_checkpoint(run_dir, step, selection)`` runs after each checkpoint.

    Raises :class:`NonFiniteLossError` on a non-finite step, after putting the last good
    parameters into the model, and :class:`DivergenceError` on a loss past the divergence
    bound; either way the last checkpoint on disk is left as it was.
    """
    driver = TrainingDriver(engine, data, plan, selection, run_dir=run_dir, start=start,
                            progress=progress, description=description,
                            state_extra=state_extra, commit=commit, on_checkpoint=on_checkpoint)
    try:
        driver.run_until(plan.total_steps)
    finally:
        driver.close()
    return driver.outcome()


class TrainingDriver:
    """:func:`run_training` taken apart: set up at construction (the history, the selection
    and the first validation of a fresh run), :meth:`run_until` a step, :meth:`outcome` at the
    end. ``ppl-vae bench`` drives one of these an epoch at a time, so that what it times is
    exactly the per-chunk work of ``fit``."""

    def __init__(self, engine: Any, data: batches.TrainingData, plan: Plan,
                 selection: Selection, *, run_dir: Path | None = None,
                 start: Checkpoint | None = None, progress: bool = True,
                 description: str = "", state_extra: dict[str, Any] | None = None,
                 commit: Callable[[], Path] | None = None,
                 on_checkpoint: Callable[[Path, int, Selection], None] | None = None) -> None:
        self.engine, self.data, self.plan, self.selection = engine, data, plan, selection
        self.run_dir, self.commit, self.on_checkpoint = run_dir, commit, on_checkpoint
        self.state_extra = state_extra or {}
        self.step = start.step if start else 0
        self.history = History.from_csv(start.history_csv) if start else History()
        if start is not None and "selection" in start.state:
            selection.load_state(start.state["selection"], start.arrays)
        self.lowest = _lowest_train_loss(self.history)
        elapsed = float(start.state["elapsed"]) if start else 0.0
        self.last_checkpoint = start.path if start else None
        self.t0 = time.perf_counter() - elapsed
        self.order: np.ndarray | None = None
        self.epoch_loaded = -1
        self.postfix = {"loss": "", "valid": ""}
        if start is None and data.valid is not None:
            self._record_valid(0)
        self.bar = tqdm(total=plan.total_steps, initial=self.step, disable=not progress,
                        unit="step", desc=description, dynamic_ncols=True)

    def _record_valid(self, at: int) -> None:
        data, engine = self.data, self.engine
        loss = engine.evaluate(data.valid, at, data.valid_labels)
        self.history.add(np.array([at]), np.array([max(at - 1, 0) // self.plan.steps_per_epoch]),
                         "valid", np.array([loss]), np.array([time.perf_counter() - self.t0]))
        self.selection.observe(at, loss, engine.get_params)
        engine.after_validation(loss)
        self.postfix["valid"] = f"{loss:.2f}"

    def run_until(self, end_step: int) -> np.ndarray:
        """Train chunk after chunk until step ``end_step`` (or the plan's end, or the
        selection's stop); the per-datapoint training losses of the steps run."""
        engine, data, plan, selection = self.engine, self.data, self.plan, self.selection
        end_step = min(end_step, plan.total_steps)
        ran = []
        while self.step < end_step and not selection.stopped:
            step = self.step
            epoch, pos = divmod(step, plan.steps_per_epoch)
            if epoch != self.epoch_loaded:
                self.order = batches.epoch_order(plan.seed, epoch, data.num_data,
                                                 plan.batch_size)
                engine.set_epoch_data(data.epoch_train(epoch), data.train_labels)
                self.epoch_loaded = epoch
            end = plan.chunk_end(step)
            result = engine.run(self.order[pos:pos + end - step], plan.kl_weights(step, end))
            diverged = _first_divergent(result.losses, self.lowest, plan.divergence_factor)
            done = len(result.losses) if diverged is None else diverged
            steps = np.arange(step + 1, step + done + 1)
            self.history.add(steps, (steps - 1) // plan.steps_per_epoch, "train",
                             result.losses[:done], result.times[:done] - self.t0)
            ran.append(result.losses[:done])
            self.step = step = step + done
            self.bar.update(done)
            if result.failure is not None or diverged is not None:
                engine.finalize()
                frame = self.history.frame()
                raise (_non_finite(result.failure, step + 1, epoch, plan, self.last_checkpoint,
                                   frame, self.run_dir) if diverged is None else
                       _divergent(result.losses, diverged, self.lowest, step + 1,
                                  step + len(result.losses) - done, plan,
                                  self.last_checkpoint, frame, self.run_dir))
            self.lowest = min(self.lowest, float(np.min(result.losses, initial=np.inf)))
            self.postfix["loss"] = f"{float(np.mean(result.losses)):.2f}"
            if data.valid is not None and plan.is_due(step, plan.eval_every):
                self._record_valid(step)
            self.bar.set_postfix({k: v for k, v in self.postfix.items() if v}, refresh=False)
            if self.run_dir is not None and (plan.is_due(step, plan.checkpoint_every)
                                             or selection.stopped):
                self._checkpoint()
        return np.concatenate(ran) if ran else np.zeros(0)

    def _checkpoint(self) -> None:
        self.last_checkpoint = save(self.engine, self.run_dir, self.step, self.history,
                                    self.selection, time.perf_counter() - self.t0,
                                    self.state_extra)
        if self.commit is not None:
            self.run_dir, self.commit = self.commit(), None
            self.last_checkpoint = self.run_dir / CHECKPOINT_DIR / self.last_checkpoint.name
        if self.on_checkpoint is not None:
            self.on_checkpoint(self.run_dir, self.step, self.selection)

    def close(self) -> None:
        """Close the progress bar."""
        self.bar.close()

    def outcome(self) -> TrainingOutcome:
        """Put the kept parameters into the model; the history, steps, seconds, selection."""
        self.engine.finalize()
        selection = self.selection
        if selection.best_params is not None:
            self.engine.vae.set_params(selection.best_params)
        return TrainingOutcome(history=self.history.frame(selection.kept_step(self.step)),
                               steps=self.step, seconds=time.perf_counter() - self.t0,
                               selection=selection)


def save(engine: Any, run_dir: Path, step: int, history: History, selection: Selection,
         elapsed: float, state_extra: dict[str, Any]) -> Path:
    """Write a checkpoint (the last state, and the selection with its best parameters) with
    the run's top-level ``params.safetensors`` (the kept parameters) and history, committed
    together by ``latest``."""
    params = engine.get_params()
    arrays, meta = engine.state()
    chosen, chosen_arrays = selection.state()
    csv = history.to_csv(selection.kept_step(step))
    return write_checkpoint(run_dir, step, params=params, arrays={**arrays, **chosen_arrays},
                            state={"elapsed": elapsed, "engine": meta, "selection": chosen,
                                   **state_extra},
                            history_csv=csv,
                            run_files={PARAMS_FILE: arrays_bytes(selection.kept_params(params)),
                                       HISTORY_FILE: csv.encode()})


def _lowest_train_loss(history: History) -> float:
    frame = history.frame()
    train = frame.loc[frame["split"] == "train", "loss"].to_numpy()
    return float(np.min(train, initial=np.inf))


def _first_divergent(losses: np.ndarray, lowest: float, factor: float | None) -> int | None:
    """Index of the first loss above ``m + factor * max(|m|, 1)``, ``m`` the running minimum
    before it (starting at ``lowest``), or None."""
    if factor is None or not len(losses):
        return None
    before = np.minimum.accumulate(np.concatenate([[lowest], losses]))[:-1]
    with np.errstate(invalid="ignore"):  # inf - inf where nothing is known yet
        over = np.nonzero(losses > before + factor * np.maximum(np.abs(before), 1.0))[0]
    return int(over[0]) if len(over) else None


def _kept(checkpoint: Path | None, run_dir: Path | None) -> str:
    if checkpoint is not None:
        return (f"The last good checkpoint, {checkpoint}, is kept; continue from it with "
                f"resume=True (--resume) once the cause is fixed.")
    if run_dir is None:
        return "No checkpoint had been written yet."
    return ("No checkpoint had been written yet, so the new run is discarded and the run "
            "folder is as it was before.")


_TRY = ("lower the learning rate{lr}; clip gradients (optimizer='clipped-adam', or "
        "optax.clip_by_global_norm in an optax chain); check the data for extreme values; "
        "raise the spec's scale_floor (or a Gaussian likelihood's min_scale) so no scale can "
        "collapse")


def _divergent(losses: np.ndarray, index: int, lowest: float, step: int, params_step: int,
               plan: Plan, checkpoint: Path | None, history: pd.DataFrame,
               run_dir: Path | None) -> DivergenceError:
    """The error for ``losses[index]``, the loss of ``step``, past the divergence bound."""
    loss = losses[index]
    m = min(lowest, float(np.min(losses[:index], initial=np.inf)))
    bound = m + plan.divergence_factor * max(abs(m), 1.0)
    lr = f" (now {plan.learning_rate:g})" if plan.learning_rate else ""
    message = (
        f"the training loss diverged at step {step}: {loss:.6g} nats per datapoint, above the "
        f"guard's bound {bound:.6g} = m + {plan.divergence_factor:g}·max(|m|, 1) with m = "
        f"{m:.6g}, the lowest training loss so far. Training stopped; the model holds the "
        f"parameters after step {params_step} (the end of that chunk), the history ends at "
        f"step {step - 1}. {_kept(checkpoint, run_dir)} Things to try: "
        + _TRY.format(lr=lr) + "; or raise divergence_factor (--divergence-factor) if such "
        "a jump is expected.")
    return DivergenceError(message, step=step, checkpoint=checkpoint, history=history)


def _non_finite(failure: StepFailure, step: int, epoch: int, plan: Plan,
                checkpoint: Path | None, history: pd.DataFrame,
                run_dir: Path | None) -> NonFiniteLossError:
    where = []
    if failure.sites:
        where.append(f"sample sites with a non-finite value or log-density on that minibatch: "
                     f"{', '.join(failure.sites)}")
    if failure.parameters:
        where.append(f"parameters with a non-finite value or gradient: "
                     f"{', '.join(failure.parameters)}")
    if not where:
        where.append("no single site or parameter is non-finite on its own (an overflow in "
                     "the sum)")
    lr = f" (now {plan.learning_rate:g})" if plan.learning_rate else ""
    message = (
        f"non-finite loss or gradient at step {step} (epoch {epoch}, loss {failure.loss}); "
        + "; ".join(where) + f"; largest |value| in that minibatch: {failure.batch_max_abs:g}"
        f". Training stopped; the model holds the parameters from before "
        f"step {step}. {_kept(checkpoint, run_dir)} Things to try: " + _TRY.format(lr=lr)
        + ".")
    return NonFiniteLossError(message, step=step, sites=failure.sites,
                              parameters=failure.parameters, checkpoint=checkpoint,
                              history=history)
