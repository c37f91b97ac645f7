"""Fit a VAE by stochastic variational inference, on either backend, with one signature.

>>> splits = ppl_vae.prepare("mnist5k", likelihood="bernoulli")
>>> vae = ppl_vae.build("gaussian_gaussian", backend="numpyro")
>>> result = fit(vae, splits, num_epochs=20, out_dir="runs/gg")   # doctest: +SKIP
>>> result.history.query("split == 'valid'").tail(1)               # doctest: +SKIP

Each step maximizes a Monte Carlo estimate of the ELBO (or of the IWAE bound),

.. math:: \\mathcal{L}(x) = \\mathbb{E}_{q(z|x)}[\\log p(x|z) + \\log p(z) - \\log q(z|x)]
          \\le \\log p(x),

on a minibatch scaled by ``N / B`` (the ``data`` plate), with the gradient estimator chosen by
name (:mod:`ppl_vae.estimators`). The history reports ``loss`` = −objective per datapoint, in
nats: per step on the training minibatch, and on the validation data at step 0 and after every
evaluation interval.

References
----------
Hoffman, M. D., Blei, D. M., Wang, C. and Paisley, J. (2013). Stochastic variational
inference. JMLR 14.
Kingma, D. P. and Welling, M. (2014). Auto-encoding variational Bayes. ICLR.
Kingma, D. P. and Ba, J. (2015). Adam: a method for stochastic optimization. ICLR.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ppl_vae import runs
from ppl_vae import spec as spec_module
from ppl_vae.data import Splits, provenance
from ppl_vae.estimators import IWAE, AnalyticKL, Reparam, get_estimator
from ppl_vae.io import read_json
from ppl_vae.models.memory import check_particles_fit
from ppl_vae.runs import CheckpointError, RunWriter, check_replaceable, checkpoints
from ppl_vae.threads import set_threads
from ppl_vae.training import batches
from ppl_vae.training.loop import (
    ADAM_BETA1,
    CLIP_NORM,
    DIVERGENCE_FACTOR,
    OPTIMIZERS,
    DivergenceError,
    NonFiniteLossError,
    Plan,
    run_training,
)
from ppl_vae.training.schedules import KLWeight, LRSchedule
from ppl_vae.training.selection import Selection

__all__ = ["CLIP_NORM", "OPTIMIZERS", "DivergenceError", "FitResult", "NonFiniteLossError",
           "fit"]

DEFAULT_CHECKPOINT_EVERY = 500
MAX_CHUNK = 100
"""Longest run of steps between two looks at the loss (progress bar, NaN guard)."""

_RESUME_KEYS = ("estimator", "num_particles", "optimizer", "learning_rate", "batch_size",
                "dtype", "select", "valid_criterion", "valid_particles", "lr_schedule",
                "kl_weight", "free_bits")


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    vae : the trained model (the object passed in, updated).
    history : tidy DataFrame with columns ``step``, ``epoch``, ``split`` ("train" / "valid"),
        ``loss`` (−objective per datapoint, nats) and ``wall_time`` (seconds of training,
        counted across resumes).
    run_dir : the run directory, or None when nothing was written.
    num_steps : SVI steps taken in total (fewer than asked for when early stopping ended the
        run).
    seconds : wall-clock seconds of training, counted across resumes.
    selection : what the run kept: ``select``, ``criterion`` (the validation bound, e.g.
        "ELBO"), ``step`` (the step of the parameters the model now holds), ``best_valid_step``
        and ``best_valid_loss`` (−bound per datapoint), ``last_step``, ``patience`` and
        ``stopped_early``; the same record as run.json's ``selection``.
    """

    vae: Any
    history: pd.DataFrame
    run_dir: Path | None
    num_steps: int
    seconds: float
    selection: dict[str, Any]

    @property
    def selected_step(self) -> int:
        """The step whose parameters the model holds."""
        return int(self.selection["step"])


def fit(vae: Any, data: Any, *, num_steps: int | None = None, num_epochs: int | None = None,
        batch_size: int | None = None, optimizer: Any = "adam",
        learning_rate: float | None = None, estimator: Any = None,
        num_particles: int | None = None, seed: int = 0, validation_data: Any = None,
        eval_every: int | None = None, out_dir: str | Path | None = None,
        checkpoint_every: int | None = None, resume: bool = False, overwrite: bool = False,
        progress: bool = True, device: str | None = None,
        data_config: dict[str, Any] | None = None,
        divergence_factor: float | None = DIVERGENCE_FACTOR,
        threads: int | str = "auto", select: str | None = None, patience: int | None = None,
        valid_criterion: str | None = None, valid_particles: int | None = None,
        lr_schedule: str | LRSchedule | None = None, beta: float | None = None,
        kl_warmup_steps: int | None = None, kl_warmup_start: float | None = None,
        free_bits: float | None = None) -> FitResult:
    """Train ``vae`` on ``data`` by SVI and return the trained model and its history.

    Parameters
    ----------
    vae : a VAE from :func:`ppl_vae.models.build` (either backend).
    data : an ``(N, D)`` (or ``(N, *image_shape)``) array, or :class:`ppl_vae.data.Splits`
        (trains on ``train``, validates on ``valid``, honours dynamic binarization by drawing
        a fresh binarization every epoch). Checked against the spec before anything runs. A
        conditioned spec (``[condition]``) reads the splits' ``train_labels`` and
        ``valid_labels``, so it needs labelled :class:`~ppl_vae.data.Splits`.
    num_steps, num_epochs : length of training, at most one of them; an epoch is ``N // B``
        steps. Default: the spec's ``[training] num_steps``.
    batch_size, learning_rate, estimator, num_particles : default to the spec's ``[training]``
        values. ``estimator`` is a name of :data:`ppl_vae.estimators.ESTIMATORS` (``reparam``,
        ``analytic-kl``, ``score``, ``score-baseline``, ``iwae`` with K = ``num_particles``).
    optimizer : ``"adam"``, ``"clipped-adam"``, or an optimizer object of the backend (a
        ``pyro.optim.PyroOptim``; an optax ``GradientTransformation`` or NumPyro optimizer),
        in which case ``learning_rate`` is not used.
    seed : fixes the minibatch order, the Monte Carlo draws and the evaluation draws.
    validation_data : held-out array (only with an array ``data``).
    eval_every : steps between validation losses; default: every epoch.
    select : ``"best-valid"`` (the spec's default): the model ends with the parameters of its
        lowest validation loss (the earliest on a tie), step 0's evaluation included;
        ``"last"``: with its last parameters. The last training state always stays in the
        checkpoints, so ``resume`` continues from it. Without validation data the run keeps
        its last parameters (asking for ``"best-valid"`` then is an error).
    patience : stop after this many validation evaluations in a row without a lower loss
        (early stopping); 0 turns off a spec's patience; default: the spec's (none: train
        every step). Needs validation data.
    valid_criterion, valid_particles : the validation bound selection, patience and the
        history's validation rows use: ``"objective"`` (default) the training estimator's own
        bound without its regularizers (the ELBO; the IWAE bound for iwae, vimco and dreg),
        ``"elbo"`` the ELBO (closed-form KL where the spec has one), ``"iwae"`` the IWAE bound
        (Burda et al. 2016); with ``valid_particles`` particles (default: ``num_particles``).
    lr_schedule : the learning-rate schedule of a named optimizer: a kind of
        :data:`ppl_vae.training.schedules.SCHEDULES` with its settings from the spec's
        ``[training] lr_*`` fields, or an :class:`~ppl_vae.training.schedules.LRSchedule`
        (which carries its own learning rate; its ``total_steps`` defaults to the run's).
        Default: the spec's (``constant``). Pyro steps torch's ``lr_scheduler`` classes,
        NumPyro optax schedules; ``plateau`` reads the validation criterion.
    beta, kl_warmup_steps, kl_warmup_start : the KL term's weight, β (Higgins et al. 2017),
        reached by a linear warm-up from ``kl_warmup_start`` over ``kl_warmup_steps`` steps
        (Bowman et al. 2016); :class:`~ppl_vae.training.schedules.KLWeight`. Default: the
        spec's (β = 1, no warm-up: the ELBO).
    free_bits : λ nats per latent dimension: the KL term becomes Σ_j max(λ, KL̄_j) over the
        minibatch means KL̄_j (Kingma et al. 2016). Default: the spec's (0: off). β, warm-up and
        free bits apply to ``reparam`` and ``analytic-kl`` (free bits to priors that factorize
        over dimensions) and are refused elsewhere; validation and every evaluation score the
        unweighted bound, while the history's training rows are the weighted loss optimized.
    out_dir : run directory (spec, run.json, params, history, checkpoints); None writes nothing.
        While training, this process holds the folder's lock (:mod:`ppl_vae.runs.writer`); a
        new run is built beside it and moved into place with its first checkpoint.
    checkpoint_every : steps between checkpoints (default 500), plus one at the end.
    resume : continue the run in ``out_dir`` from its last checkpoint; with the same device and
        seed the result equals the uninterrupted run's exactly. Without a loadable checkpoint
        this is an error and nothing in ``out_dir`` changes.
    overwrite : replace an existing run in ``out_dir`` (otherwise that is an error); the old
        run stays untouched until the new one has written its first checkpoint.
    progress : show a progress bar with the live loss; False for scripts and CI.
    device : Pyro: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``, moving the model's
        parameters there (default: where the model is); NumPyro: the JAX device to use
        (default: JAX's default device).
    threads : CPU threads for torch (and XLA, if JAX has not started yet): a number, or
        ``"auto"``, :func:`ppl_vae.threads.default_threads` (the free cores, so a shared
        machine does not make torch's threads wait on each other).
    data_config : how ``data`` was prepared (``{"source", "binarization", "dequantize",
        "fractions", "seed"}``), recorded in run.json so that ``load_run(...).splits()`` can
        rebuild it.
    divergence_factor : the divergence guard: stop at the first step whose training loss
        exceeds ``m + divergence_factor * max(|m|, 1)`` nats, ``m`` the lowest training loss
        so far (default :data:`~ppl_vae.training.loop.DIVERGENCE_FACTOR`); None turns it off.

    Raises
    ------
    ppl_vae.data.DataError : data of the wrong shape, with NaN/inf, or non-binary under a
        Bernoulli likelihood.
    ppl_vae.runs.RunExistsError : ``out_dir`` holds a run and neither resume nor overwrite.
    ppl_vae.runs.NotARunError : ``out_dir`` is a file, or a non-empty folder that is no run.
    ppl_vae.runs.RunLockedError : another process is writing ``out_dir``.
    ppl_vae.runs.CheckpointError : a corrupt checkpoint, one from a different configuration, or
        ``resume`` without a checkpoint to resume from.
    NonFiniteLossError : a non-finite loss or gradient; names the step, sites and parameters.
    DivergenceError : a finite loss past the divergence guard's bound.
    """
    spec = vae.spec
    defaults = spec.training
    estimator = get_estimator(estimator if estimator is not None else defaults.estimator)
    num_particles = _positive_int("num_particles", num_particles, defaults.num_particles)
    batch_size = _positive_int("batch_size", batch_size, defaults.batch_size)
    check_particles_fit(spec, num_particles, batch_size,
                        itemsize=np.dtype(vae.dtype_name).itemsize)
    if not (isinstance(seed, int) and seed >= 0):
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    custom_optimizer = not isinstance(optimizer, str)
    if not custom_optimizer and optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of "
                         f"{', '.join(OPTIMIZERS)} or pass an optimizer object")
    if custom_optimizer and learning_rate is not None:
        raise ValueError("learning_rate applies to a named optimizer; set the learning rate "
                         "inside the optimizer object you passed")
    if isinstance(lr_schedule, LRSchedule):
        if learning_rate is not None:
            raise ValueError("an LRSchedule carries its own learning_rate; drop learning_rate")
        learning_rate = lr_schedule.learning_rate
    learning_rate = None if custom_optimizer else float(
        learning_rate if learning_rate is not None else defaults.learning_rate)
    if learning_rate is not None and not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate}")
    largest = float(np.finfo(vae.dtype_name).max) * (1 - ADAM_BETA1)
    if learning_rate is not None and learning_rate > largest:
        raise ValueError(f"learning_rate {learning_rate:g} overflows {vae.dtype_name} in Adam's "
                         f"first step, lr / (1 - beta1) with beta1 = {ADAM_BETA1}; it must be "
                         f"at most {largest:.3g} (and is then still far too large to train)")
    if divergence_factor is not None and not (math.isfinite(divergence_factor)
                                              and divergence_factor > 0):
        raise ValueError(f"divergence_factor must be a finite number > 0 (or None: off), got "
                         f"{divergence_factor}")
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir, the run directory to continue")
    kl_weight = KLWeight(
        beta=defaults.beta if beta is None else beta,
        warmup_steps=defaults.kl_warmup_steps if kl_warmup_steps is None else kl_warmup_steps,
        warmup_start=defaults.kl_warmup_start if kl_warmup_start is None else kl_warmup_start)
    free_bits = defaults.free_bits if free_bits is None else free_bits
    valid_particles = _positive_int("valid_particles", valid_particles,
                                    defaults.valid_particles or num_particles)
    valid_estimator, criterion = _criterion(
        vae, estimator, valid_criterion or defaults.valid_criterion, valid_particles)
    set_threads(threads)

    training_data = batches.prepare_training_data(spec, data, validation_data, seed=seed)
    num_data = training_data.num_data
    encoder_free = not spec.posterior.amortized
    if encoder_free:
        _check_codes(vae, num_data)
        if validation_data is not None:
            raise ValueError(f"spec {spec.name!r} has no encoder, so held-out data has no codes "
                             "to evaluate; drop validation_data")
        training_data = batches.TrainingData(train=training_data.train, valid=None,
                                             dynamic=training_data.dynamic, seed=seed)
    selection = _selection(select, patience, defaults, validated=training_data.valid is not None)
    steps_per_epoch = batches.steps_per_epoch(num_data, batch_size)
    total_steps = _total_steps(num_steps, num_epochs, steps_per_epoch, defaults.num_steps)
    schedule = _lr_schedule(lr_schedule, defaults, learning_rate, total_steps,
                            custom=custom_optimizer)
    eval_every = _positive_int("eval_every", eval_every, steps_per_epoch)
    checkpoint_every = _positive_int("checkpoint_every", checkpoint_every,
                                     DEFAULT_CHECKPOINT_EVERY)
    plan = Plan(total_steps=total_steps, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
                seed=seed, eval_every=eval_every, checkpoint_every=checkpoint_every,
                max_chunk=min(MAX_CHUNK, steps_per_epoch), learning_rate=learning_rate,
                divergence_factor=divergence_factor,
                kl_weight=kl_weight if kl_weight.active else None)

    if out_dir is not None:  # refused before the writer's lock folder is created
        _refuse_early(runs.check_run_location(out_dir), resume=resume, overwrite=overwrite)
    with contextlib.ExitStack() as stack:  # the run folder's lock, before anything is built
        writer = None if out_dir is None else stack.enter_context(RunWriter(out_dir))
        if writer is not None:  # again under the lock: the folder may have changed
            _refuse_early(writer.path, resume=resume, overwrite=overwrite)
        engine = _make_engine(vae, optimizer, schedule, estimator=estimator,
                              kl_weighting=kl_weight.active, free_bits=free_bits,
                              valid_particles=valid_particles,
                              eval_estimator=valid_estimator,
                              num_particles=num_particles, seed=seed, num_data=num_data,
                              example_batch=training_data.train[:batch_size],
                              example_labels=None if training_data.train_labels is None
                              else training_data.train_labels[:batch_size], device=device,
                              max_chunk=plan.max_chunk)
        training = {"estimator": getattr(estimator, "label", estimator.name),
                    "num_particles": num_particles,
                    "optimizer": type(optimizer).__name__ if custom_optimizer else optimizer,
                    "learning_rate": learning_rate, "batch_size": batch_size,
                    "num_steps": total_steps, "eval_every": eval_every,
                    "checkpoint_every": checkpoint_every,
                    "dtype": vae.dtype_name, "device": engine.device_name,
                    "select": selection.select, "patience": selection.patience,
                    "valid_criterion": criterion, "valid_particles": valid_particles,
                    "lr_schedule": None if schedule is None else schedule.to_dict(),
                    "kl_weight": kl_weight.to_dict(), "free_bits": float(free_bits)}
        config: dict[str, Any] = {"seed": seed, "training": training,
                                  "data_fingerprint": training_data.fingerprint(),
                                  "run_id": _run_id(writer.path if resume else None)}
        if data_config is not None:
            config["data"] = _data_record(data, data_config)
        if encoder_free:
            config["num_data"] = num_data

        def record(run_dir: Path, step: int, kept: Selection) -> None:
            runs.write_config(run_dir, vae, {**config, "selection": kept.record(step, criterion)})

        train = functools.partial(
            run_training, engine, training_data, plan, selection, progress=progress,
            description=f"{vae.backend} {spec.name}", on_checkpoint=record,
            state_extra={"data_fingerprint": config["data_fingerprint"]})
        if writer is None:
            outcome = train()
        elif resume:
            start = _resume_from(writer.path, vae, config)
            try:
                engine.load_state(start.params, start.arrays, start.state["engine"])
            except (KeyError, ValueError) as err:
                what = (f"its {checkpoints.STATE_FILE} has no entry {err}"
                        if isinstance(err, KeyError) else str(err))
                raise CheckpointError(f"checkpoint {start.path} does not fit this model: "
                                      f"{what} (altered, or written by another version); "
                                      "delete it to resume from the checkpoint before, or "
                                      "train again with --overwrite") from None
            outcome = train(run_dir=writer.path, start=start)
        else:
            staging = writer.create(vae, config, overwrite=overwrite)
            outcome = train(run_dir=staging, commit=writer.commit)
        if writer is not None:
            record(writer.path, outcome.steps, outcome.selection)
    return FitResult(vae=vae, history=outcome.history,
                     run_dir=None if writer is None else writer.path, num_steps=outcome.steps,
                     seconds=outcome.seconds,
                     selection=outcome.selection.record(outcome.steps, criterion))


def _make_engine(vae: Any, optimizer: Any, schedule: LRSchedule | None, **options: Any) -> Any:
    """The backend's engine; a named optimizer is built by the engine's ``build_optimizer``
    following ``schedule`` (None with a user's optimizer object)."""
    if vae.backend == "pyro":
        from ppl_vae.training.pyro_engine import PyroEngine as Engine
    else:
        from ppl_vae.training.numpyro_engine import NumPyroEngine as Engine
    if isinstance(optimizer, str):
        optimizer = Engine.build_optimizer(optimizer, schedule)
    return Engine(vae, optimizer=optimizer, schedule=schedule, **options)


def _lr_schedule(given: str | LRSchedule | None, defaults: Any, learning_rate: float | None,
                 total_steps: int, *, custom: bool) -> LRSchedule | None:
    """The schedule of a named optimizer (None for a user's optimizer object, which schedules
    itself): ``given``, or the kind ``given`` (default the spec's) with the spec's settings."""
    if isinstance(given, LRSchedule):
        if custom:
            raise ValueError("lr_schedule applies to a named optimizer; schedule the optimizer "
                             "object you passed itself")
        return given if given.total_steps is not None else \
            dataclasses.replace(given, total_steps=total_steps)
    kind = given or defaults.lr_schedule
    if custom:
        if kind != "constant":
            raise ValueError(f"lr_schedule {kind!r} applies to a named optimizer; schedule the "
                             "optimizer object you passed itself")
        return None
    try:
        return LRSchedule(learning_rate=learning_rate, kind=kind,
                          warmup_steps=defaults.lr_warmup_steps,
                          decay_steps=defaults.lr_decay_steps, decay_rate=defaults.lr_decay_rate,
                          min_learning_rate=defaults.lr_min,
                          plateau_factor=defaults.lr_plateau_factor,
                          plateau_patience=defaults.lr_plateau_patience,
                          plateau_threshold=defaults.lr_plateau_threshold,
                          total_steps=total_steps)
    except ValueError as err:
        raise ValueError(f"learning-rate schedule {kind!r}: {err} (the spec's [training] "
                         "lr_* fields, or the --lr-* flags)") from None


def _criterion(vae: Any, estimator: Any, name: str, particles: int) -> tuple[Any, str]:
    """The estimator whose *value* is the validation loss, and its label for records.

    ``objective``: score-function estimators differ from ``reparam`` only in their gradient
    (and a baseline's state belongs to training), so their value is the same Monte Carlo
    ELBO, computed the cheap way; the others are their own value. ``elbo`` uses the closed-form
    KL where the spec has one."""
    if name not in spec_module.VALID_CRITERIA:
        raise ValueError(f"valid_criterion must be one of {', '.join(spec_module.VALID_CRITERIA)}"
                         f"; got {name!r}")
    if name == "objective":
        name = "iwae" if estimator.multi_particle else "elbo"
        value = Reparam() if estimator.score_function else estimator
    elif name == "elbo":
        value = AnalyticKL() if vae.spec.kl == "analytic" else Reparam()
    else:
        value = IWAE()
    label = "ELBO" if name == "elbo" else "IWAE bound"
    return value, label + (f", K = {particles}" if particles > 1 or name == "iwae" else "")


def _selection(select: str | None, patience: int | None, defaults: Any, *,
               validated: bool) -> Selection:
    """The selection rule from the arguments and the spec's defaults (``patience=0``: off)."""
    patience = defaults.patience if patience is None else (patience or None)
    if not validated:
        if select == "best-valid":
            raise ValueError("select='best-valid' needs validation data (Splits with a valid "
                             "split, or validation_data=); pass select='last'")
        if patience is not None:
            raise ValueError("patience (early stopping) needs validation data (Splits with a "
                             "valid split, or validation_data=); drop patience")
        select = "last"
    return Selection(select=select or defaults.select, patience=patience)


def _run_id(resumed: Path | None) -> str:
    """A new run's id, or the id of the run ``resumed`` continues (a new one for runs recorded
    before runs had ids)."""
    saved = read_json(resumed / runs.CONFIG_FILE) if resumed is not None else None
    if isinstance(saved, dict) and isinstance(saved.get("run_id"), str):
        return saved["run_id"]
    return uuid.uuid4().hex


def _data_record(data: Any, data_config: dict[str, Any]) -> dict[str, Any]:
    """run.json's ``data``: how the data were prepared, the dataset file's absolute path and
    SHA-256, and the splits' SHA-256 (:mod:`ppl_vae.data.provenance`)."""
    record = {"shuffle": getattr(data, "shuffled", True), **data_config,
              **provenance.source_record(data_config.get("source"))}
    if isinstance(data, Splits):
        record["splits_sha256"] = provenance.splits_digest(data)
    return record


def _refuse_early(path: Path, *, resume: bool, overwrite: bool) -> None:
    """The refusals that need no model: contradicting flags, nothing to resume, a folder that
    must not be replaced, a checkpoint folder that is a symbolic link."""
    if resume and overwrite:
        raise ValueError("resume and overwrite contradict each other; choose one")
    if resume and not runs.is_run(path):
        raise CheckpointError(f"nothing to resume: {path} holds no run (no "
                              f"{runs.CONFIG_FILE}); start it without resume")
    if resume:
        checkpoints.writable_root(path)
    else:
        check_replaceable(path, overwrite=overwrite)


def _resume_from(run_dir: Path, vae: Any, config: dict[str, Any]) -> checkpoints.Checkpoint:
    """The checkpoint to continue ``run_dir`` from; refuses (changing nothing) without one."""
    _check_same_run(run_dir, vae, config)
    latest = checkpoints.latest_checkpoint(run_dir)
    if latest is None:
        root = run_dir / runs.CHECKPOINT_DIR
        there = (f"{root} holds no complete checkpoint"
                 + (f" (only {', '.join(sorted(p.name for p in root.iterdir()))})"
                    if root.is_dir() and any(root.iterdir()) else "")
                 if root.is_dir() else f"{root} is missing")
        raise CheckpointError(f"cannot resume {run_dir}: {there}, so there is no trained "
                              "state to continue from; nothing was changed. To train it again "
                              "from step 0 pass --overwrite (overwrite=True) instead of "
                              "--resume, or choose another --out")
    found = checkpoints.load_checkpoint(latest)
    if found.state.get("data_fingerprint") != config["data_fingerprint"]:
        raise CheckpointError(f"checkpoint {latest} was trained on different data")
    total = config["training"]["num_steps"]
    if found.step > total:
        raise CheckpointError(f"the last checkpoint of {run_dir} is at step {found.step}, "
                              f"beyond num_steps={total}; ask for at least {found.step} steps")
    return found


def _check_same_run(run_dir: Path, vae: Any, config: dict[str, Any]) -> None:
    saved = read_json(run_dir / runs.CONFIG_FILE)
    problems = []
    if saved.get("backend") != vae.backend:
        problems.append(f"backend was {saved.get('backend')!r}, now {vae.backend!r}")
    saved_spec = spec_module.load(run_dir / runs.SPEC_FILE)
    if saved_spec.replace(training=vae.spec.training).to_dict() != vae.spec.to_dict():
        problems.append(f"the model spec differs from {run_dir / runs.SPEC_FILE}")
    problems += [f"[training] {key} was {value!r}, now {getattr(vae.spec.training, key)!r}"
                 for key, value in dataclasses.asdict(saved_spec.training).items()
                 if getattr(vae.spec.training, key) != value]
    if saved.get("seed") != config["seed"]:
        problems.append(f"seed was {saved.get('seed')}, now {config['seed']}")
    if saved.get("data_fingerprint") != config["data_fingerprint"]:
        problems.append("the training data differ (another dataset, split or binarization)")
    old, new = saved.get("training", {}), config["training"]
    problems += [f"{key} was {old.get(key)!r}, now {new[key]!r}" for key in _RESUME_KEYS
                 if key in old and old[key] != new[key]]  # runs older than a key skip it
    if problems:
        raise CheckpointError(f"cannot resume {run_dir}: " + "; ".join(problems)
                              + ". Resume with the original settings, or start a new run "
                              "(another out_dir, or overwrite).")


def _check_codes(vae: Any, num_data: int) -> None:
    codes = vae.get_params()["codes.loc"].shape[0]
    if codes != num_data:
        raise ValueError(f"the model holds {codes} per-datapoint codes but the training data "
                         f"has {num_data} rows; build it with num_data={num_data}")


def _positive_int(name: str, value: int | None, default: int) -> int:
    value = default if value is None else value
    if not (isinstance(value, int) and value >= 1):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _total_steps(num_steps: int | None, num_epochs: int | None, steps_per_epoch: int,
                 default: int) -> int:
    if num_steps is not None and num_epochs is not None:
        raise ValueError("pass num_steps or num_epochs, not both")
    if num_epochs is not None:
        return _positive_int("num_epochs", num_epochs, 1) * steps_per_epoch
    return _positive_int("num_steps", num_steps, default)
