"""A loaded run (:class:`Run`): its spec, its record ``run.json``, the model at its current
parameters, and the data it was trained on, rebuilt; :func:`load_run` and :func:`create_run`."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppl_vae import spec as spec_module
from ppl_vae.data import binarize_static, prepare
from ppl_vae.data.provenance import check_source, check_splits
from ppl_vae.io import load_arrays, read_json, save_arrays, write_json, write_toml
from ppl_vae.models import BACKENDS, build
from ppl_vae.models.conditioning import check_labels
from ppl_vae.runs.checkpoints import TrainingProgress, check_run_files, training_progress
from ppl_vae.runs.layout import (
    CONFIG_FILE,
    PARAMS_FILE,
    SPEC_FILE,
    SPLITS,
    CheckpointError,
    check_replaceable,
    require_run,
)
from ppl_vae.spec import ModelSpec


@dataclass(frozen=True, eq=False)
class EvaluationData:
    """A run's data prepared for evaluating the model, by :meth:`Run.evaluation_data`.

    ``x`` is the chosen split; ``idx`` its rows in the training set where the model stores
    one code per training point (encoder-free posteriors, training split), else None;
    ``train`` and ``valid`` are prepared the same way (for nearest neighbours and Parzen
    bandwidths); ``notes`` say what was done to the data, for reports; ``c`` the class labels
    of ``x`` where the model is conditioned on them (``[condition]``), else None.
    """

    split: str
    x: np.ndarray
    idx: np.ndarray | None
    train: np.ndarray
    valid: np.ndarray
    splits: Any
    notes: list[str] = field(default_factory=list)
    c: np.ndarray | None = None


@dataclass
class Run:
    """A loaded run: its folder, spec, config (``run.json``) and the model."""

    path: Path
    spec: ModelSpec
    config: dict[str, Any]
    vae: Any

    def progress(self) -> TrainingProgress | None:
        """Where training stands (:func:`~ppl_vae.runs.checkpoints.training_progress`)."""
        return training_progress(self.path)

    def unfinished_warning(self) -> str | None:
        """A warning when the run stopped before the steps it was asked for (and not by
        early stopping), else None."""
        progress = self.progress()
        planned = self.config.get("training", {}).get("num_steps")
        if progress is None or planned is None or progress.step >= planned \
                or progress.stopped_early:
            return None
        return (f"{self.path} has trained {progress.step} of its {planned} steps (interrupted, "
                f"or still training): its parameters are those of step {progress.params_step}"
                f"; an interrupted run continues with ppl-vae train ... --out {self.path} "
                "--resume")

    def parameters_note(self) -> str | None:
        """Which step's parameters the run holds and why, for what evaluates or reports it;
        None for a run without a checkpoint."""
        progress = self.progress()
        if progress is None:
            return None
        selection = self.config.get("selection", {})
        criterion = selection.get("criterion", "bound")
        stopped = (f", stopped early after {selection.get('patience')} validation evaluations "
                   "without improvement" if progress.stopped_early else "")
        if progress.params_step != progress.step:
            best = selection.get("best_valid_loss")
            value = "" if best is None else f" {-best:.2f}"
            return (f"parameters of step {progress.params_step}, the best validation "
                    f"{criterion}{value} nats (select = best-valid); trained to step "
                    f"{progress.step}{stopped}")
        why = ("the best validation step, which is the last" if selection.get("select")
               == "best-valid" else "the last trained step")
        return f"parameters of step {progress.step} ({why}{stopped})"

    @property
    def run_id(self) -> str:
        """The id ``ppl-vae train`` gave the run (kept by copies and renames of its folder);
        the folder's name for runs recorded before runs had ids."""
        return str(self.config.get("run_id") or self.path.resolve().name)

    @property
    def has_data(self) -> bool:
        """Whether run.json records how the data were prepared (``ppl-vae train`` does)."""
        return "data" in self.config

    def splits(self) -> Any:
        """The train/valid/test splits this run was trained on, rebuilt from run.json."""
        if not self.has_data:
            raise CheckpointError(f"{self.path / CONFIG_FILE} records no 'data' settings, so "
                                  "the data cannot be rebuilt; train with ppl-vae train")
        data = self.config["data"]
        where = str(self.path / CONFIG_FILE)
        source = check_source(data, where) if "path" in data else data["source"]
        splits = prepare(source, images_key=data.get("images_key"),
                         labels_key=data.get("labels_key"), likelihood=self.spec.likelihood.name,
                         binarization=data.get("binarization", "static"),
                         dequantize=data.get("dequantize", False),
                         fractions=tuple(data.get("fractions", (0.8, 0.1, 0.1))),
                         seed=data.get("seed", 0),
                         # runs recorded before splits were shuffled kept the source's order
                         shuffle=data.get("shuffle", False))
        check_splits(splits, data.get("splits_sha256"), where)
        return splits

    def with_data(self, **data: Any) -> Run:
        """This run with run.json's data settings replaced in memory (``source``,
        ``images_key``, ``labels_key``; e.g. the data file moved): what its jobs rebuild the
        splits from, with the recorded split, binarization and seed."""
        if not data:
            return self
        merged = {**self.config.get("data", {}), **data}
        if "source" in data and "path" in merged:  # a moved file: its recorded hash must match
            merged["path"] = os.path.abspath(data["source"])
        if "source" not in merged:
            raise CheckpointError(f"{self.path / CONFIG_FILE} records no dataset; name the "
                                  "data with --dataset")
        return dataclasses.replace(self, config={**self.config, "data": merged})

    def default_split(self) -> str:
        """``"test"``, or ``"train"`` for an encoder-free model (its codes exist only for the
        training points)."""
        return "test" if self.spec.posterior.amortized else "train"

    def evaluation_data(self, split: str | None = None, *, max_points: int | None = None,
                        seed: int = 0) -> EvaluationData:
        """The data every job evaluates the model on: one policy for all commands.

        * ``split`` (default :meth:`default_split`) of the rebuilt splits, its first
          ``max_points`` rows when given;
        * a dynamically binarized run is evaluated on one static binarization (``seed``): a
          Bernoulli likelihood scores binary data;
        * an encoder-free model's posterior is one stored code per training point: the
          training split comes with its indices ``idx``; other splits have none (only the
          prior-started AIS can score them);
        * a conditioned model's data come with the split's labels ``c``.
        """
        split = split or self.default_split()
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
        splits = self.splits()
        arrays = {name: getattr(splits, name) for name in SPLITS}
        notes = []
        if splits.dynamic_binarization:
            arrays = {name: binarize_static(a, seed) for name, a in arrays.items()}
            notes.append(f"data: dynamically binarized run, evaluated on one static "
                         f"binarization (seed {seed})")
        x = arrays[split][:max_points]
        idx = None
        if not self.spec.posterior.amortized:
            if split == "train":
                idx = np.arange(x.shape[0])  # stored codes follow the training rows
            else:
                notes.append(f"no encoder: the {split} split has no stored codes, so no "
                             "q(z | x) for it")
        c = None
        if self.spec.condition is not None:
            labels = getattr(splits, f"{split}_labels")
            if labels is None:
                raise CheckpointError(f"{self.path} holds a conditioned model, but its data "
                                      f"({self.config['data'].get('source')}) rebuild without "
                                      "labels; evaluate it on labelled data through the API "
                                      "(evaluate_split(..., c=labels))")
            c = check_labels(self.spec, labels[:max_points], x.shape[0], f"{split} labels")
        return EvaluationData(split=split, x=x, idx=idx, train=arrays["train"],
                              valid=arrays["valid"], splits=splits, notes=notes, c=c)


_CONFIG_FIELDS = (("data", dict), ("training", dict), ("selection", dict), ("seed", int),
                  ("num_data", int), ("run_id", str))
"""Fields of run.json that readers use, and the JSON type each must have where present."""


def read_run(path: str | Path, *, check_files: bool = True) -> Run:
    """A run directory's spec and checked ``run.json``, without building the model
    (``vae`` is None); ``check_files``: also refuse top-level parameters or history that are
    not those the latest checkpoint committed (:func:`~.checkpoints.check_run_files`)."""
    path = require_run(path)
    spec = spec_module.load(path / SPEC_FILE)
    config = read_json(path / CONFIG_FILE)
    where = path / CONFIG_FILE
    fix = "it was damaged or written by something else: restore it, or train the run again"
    if not isinstance(config, dict) or config.get("backend") not in BACKENDS:
        raise CheckpointError(f"{where} is not a run record of ppl_vae (it needs a JSON object "
                              f"with \"backend\": one of {', '.join(BACKENDS)}); {fix}")
    for key, kind in _CONFIG_FIELDS:
        value = config.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise CheckpointError(f"{where}: \"{key}\" must be a JSON "
                                  f"{'object' if kind is dict else kind.__name__}, got "
                                  f"{json.dumps(value)[:40]}; {fix}")
    data = config.get("data")
    if data is not None and not isinstance(data.get("source"), str):
        raise CheckpointError(f"{where}: \"data\" needs a \"source\" (a dataset name or "
                              f"path); {fix}")
    num_steps = config.get("training", {}).get("num_steps")
    if num_steps is not None and (not isinstance(num_steps, int) or isinstance(num_steps, bool)):
        raise CheckpointError(f"{where}: \"training\" \"num_steps\" must be an integer, got "
                              f"{json.dumps(num_steps)[:40]}; {fix}")
    if check_files:
        check_run_files(path)
    return Run(path=path, spec=spec, config=config, vae=None)


def load_run(path: str | Path, backend: str | None = None, *, dtype: str = "float32",
             device: str = "cpu") -> Run:
    """Load a run directory into a VAE of ``backend`` (default: the one it was trained with);
    parameters that are not finite are refused (:class:`CheckpointError`)."""
    run = read_run(path, check_files=False)
    path, config = run.path, run.config
    backend = backend or config["backend"]
    vae = build(run.spec, backend, seed=config.get("seed", 0), num_data=config.get("num_data"),
                dtype=dtype, device=device)
    params = load_arrays(path / PARAMS_FILE)  # a missing or unreadable file named as such
    check_run_files(path)
    broken = [name for name, value in params.items()
              if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all()]
    if broken:
        raise CheckpointError(f"{path / PARAMS_FILE}: parameter(s) {', '.join(broken[:3])} "
                              "hold NaN or infinite values (a damaged file, or a training "
                              "that diverged); train the run again, or resume it from an "
                              "earlier checkpoint")
    try:
        vae.set_params(params)
    except ValueError as err:
        raise CheckpointError(f"{path / PARAMS_FILE} does not fit {path / SPEC_FILE}: {err}") \
            from None
    run.vae = vae
    return run


def write_config(path: str | Path, vae: Any, config: dict[str, Any]) -> None:
    """``run.json``: ``config`` plus the backend."""
    write_json(Path(path) / CONFIG_FILE, {"backend": vae.backend, **config})


def create_run(path: str | Path, vae: Any, config: dict[str, Any], *,
               overwrite: bool = False) -> Path:
    """Write a new run directory: spec, ``run.json`` (``config`` plus the backend) and params.

    An existing run is never replaced unless ``overwrite=True``, nor a folder of other files
    (:func:`~ppl_vae.runs.layout.check_replaceable`).
    """
    path = Path(path)
    check_replaceable(path, overwrite=overwrite)
    path.mkdir(parents=True, exist_ok=True)
    write_toml(path / SPEC_FILE, vae.spec.to_dict())
    write_config(path, vae, config)
    save_arrays(path / PARAMS_FILE, vae.get_params())
    return path
