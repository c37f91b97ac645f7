"""Run directories: what a trained model leaves on disk, and how to load it back.

This module is the one place that names the files of a run directory ``runs/NAME/``::

    spec.toml              SPEC_FILE: the model spec (readable by ppl_vae.spec.load)
    run.json               CONFIG_FILE: backend, dataset and split settings, seed, training
    params.safetensors     PARAMS_FILE: the latest parameters, flat names (``vae.get_params()``)
    history.csv            HISTORY_FILE: per-step / per-epoch training history
    checkpoints/           CHECKPOINT_DIR: ``latest`` and the newest complete ``step-NNNNNNNN/``
                           folders (:mod:`ppl_vae.training.checkpoint`); ``fit(...,
                           resume=True)`` continues from them
    training_curves.png    CURVES_FILE (``ppl-vae train``)
    metrics.csv            METRICS_FILE (``ppl-vae evaluate``)
    samples.png            SAMPLES_FILE, RECONSTRUCTIONS_FILE (``ppl-vae sample``)
    reconstructions.png
    latents.csv            LATENTS_FILE, TRAVERSALS_FILE, INTERPOLATIONS_FILE (``ppl-vae
    traversals.png         sample``, models with an encoder): codes of the split with labels
    interpolations.png     and a 2-D view; decoded traversals and interpolations
    diagnostics.*          DIAGNOSTICS_STEM + .nc, .csv, .md, .html (``ppl-vae diagnose``)
    variance/              VARIANCE_DIR (``ppl-vae variance``): VARIANCE_TABLES as CSV, e.g.
                           VARIANCE_RATIOS, and its own report
    report.md, .html       REPORT_STEM (``ppl-vae report``)
    figures/               the reports' PNGs

``run.json``'s ``data`` settings rebuild the splits; a run without ``data.shuffle`` dates from
before splits were shuffled and rebuilds them in the source's order.

``params.safetensors`` and ``history.csv`` are rewritten at every checkpoint, so a run that
is still training (or was interrupted) loads at its last checkpoint.

Beside each run folder ``NAME`` lies its writer's folder ``.NAME.ppl-vae/``
(:mod:`ppl_vae.run_writer`): the lock that one training process holds while it writes the
run, and the new run it builds before swapping it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppl_vae import spec as spec_module
from ppl_vae.io import CheckpointError, load_arrays, read_json, save_arrays, write_json, write_toml
from ppl_vae.spec import ModelSpec

SPEC_FILE = "spec.toml"
CONFIG_FILE = "run.json"
PARAMS_FILE = "params.safetensors"
HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
CURVES_FILE = "training_curves.png"
METRICS_FILE = "metrics.csv"
SAMPLES_FILE = "samples.png"
RECONSTRUCTIONS_FILE = "reconstructions.png"
LATENTS_FILE = "latents.csv"
TRAVERSALS_FILE = "traversals.png"
INTERPOLATIONS_FILE = "interpolations.png"
DIAGNOSTICS_STEM = "diagnostics"
DIAGNOSTICS_NETCDF = f"{DIAGNOSTICS_STEM}.nc"
DIAGNOSTICS_TABLE = f"{DIAGNOSTICS_STEM}.csv"
VARIANCE_DIR = "variance"
VARIANCE_TABLES = ("groups", "params", "ratios", "training", "skipped")
"""The tidy tables of a gradient-variance study, each written as NAME.csv."""
VARIANCE_RATIOS = "ratios.csv"
REPORT_STEM = "report"
SPLITS = ("train", "valid", "test")


class RunError(RuntimeError):
    """A run folder that cannot be used as asked; the message says why and what to do."""


class RunExistsError(RunError, FileExistsError):
    """Refusal to overwrite a run a user already has."""


class NotARunError(RunError):
    """A folder that is not a ppl_vae run (missing, a file, or someone else's files)."""


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a run directory (it holds ``run.json``)."""
    return (Path(path) / CONFIG_FILE).is_file()


def require_run(path: str | Path) -> Path:
    """``path`` as a Path if it is a run directory, else :class:`NotARunError`."""
    path = Path(path)
    if not path.exists():
        raise NotARunError(f"{path}: no such run directory; train one with "
                           f"ppl-vae train SPEC --out {path}")
    if not is_run(path):
        kind = "a file" if path.is_file() else f"a folder without {CONFIG_FILE}"
        raise NotARunError(f"{path} is {kind}, not a ppl_vae run directory; pass a folder "
                           "written by ppl-vae train")
    return path


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

    def progress(self) -> tuple[int, int] | None:
        """(step of the parameters, steps the run was asked for), or None where unknown.

        The parameters are those of the newest checkpoint (``params.safetensors`` is
        rewritten with each one).
        """
        from ppl_vae.training import checkpoint

        planned = self.config.get("training", {}).get("num_steps")
        latest = checkpoint.latest_checkpoint(self.path)
        if planned is None or latest is None:
            return None
        state = read_json(latest / checkpoint.STATE_FILE)
        return int(state.get("step", 0)), int(planned)

    def unfinished_warning(self) -> str | None:
        """A warning when the run stopped before the steps it was asked for, else None."""
        progress = self.progress()
        if progress is None or progress[0] >= progress[1]:
            return None
        step, planned = progress
        return (f"{self.path} has trained {step} of its {planned} steps (interrupted, or "
                f"still training): its parameters are those of step {step}; an interrupted "
                f"run continues with ppl-vae train ... --out {self.path} --resume")

    @property
    def has_data(self) -> bool:
        """Whether run.json records how the data were prepared (``ppl-vae train`` does)."""
        return "data" in self.config

    def splits(self) -> Any:
        """The train/valid/test splits this run was trained on, rebuilt from run.json."""
        from ppl_vae.data import prepare

        if not self.has_data:
            raise CheckpointError(f"{self.path / CONFIG_FILE} records no 'data' settings, so "
                                  "the data cannot be rebuilt; train with ppl-vae train")
        data = self.config["data"]
        return prepare(data["source"], likelihood=self.spec.likelihood.name,
                       binarization=data.get("binarization", "static"),
                       dequantize=data.get("dequantize", False),
                       fractions=tuple(data.get("fractions", (0.8, 0.1, 0.1))),
                       seed=data.get("seed", 0),
                       # runs recorded before splits were shuffled kept the source's order
                       shuffle=data.get("shuffle", False))

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
        from ppl_vae.conditioning import check_labels
        from ppl_vae.data import binarize_static

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


def load_run(path: str | Path, backend: str | None = None, *, dtype: str = "float32",
             device: str = "cpu") -> Run:
    """Load a run directory into a VAE of ``backend`` (default: the one it was trained with)."""
    from ppl_vae.models import BACKENDS, build

    path = require_run(path)
    spec = spec_module.load(path / SPEC_FILE)
    config = read_json(path / CONFIG_FILE)
    if not isinstance(config, dict) or config.get("backend") not in BACKENDS:
        raise CheckpointError(f"{path / CONFIG_FILE} is not a run record of ppl_vae (it needs "
                              f"a JSON object with \"backend\": one of {', '.join(BACKENDS)}); "
                              "it was damaged or written by something else")
    backend = backend or config["backend"]
    vae = build(spec, backend, seed=config.get("seed", 0), num_data=config.get("num_data"),
                dtype=dtype, device=device)
    params = load_arrays(path / PARAMS_FILE)
    try:
        vae.set_params(params)
    except ValueError as err:
        raise CheckpointError(f"{path / PARAMS_FILE} does not fit {path / SPEC_FILE}: {err}") \
            from None
    return Run(path=path, spec=spec, config=config, vae=vae)


def write_config(path: str | Path, vae: Any, config: dict[str, Any]) -> None:
    """``run.json``: ``config`` plus the backend."""
    write_json(Path(path) / CONFIG_FILE, {"backend": vae.backend, **config})


def create_run(path: str | Path, vae: Any, config: dict[str, Any], *,
               overwrite: bool = False) -> Path:
    """Write a new run directory: spec, ``run.json`` (``config`` plus the backend) and params.

    An existing run is never replaced unless ``overwrite=True``.
    """
    path = Path(path)
    if is_run(path) and not overwrite:
        raise RunExistsError(f"{path} already holds a run; choose another --out, resume it "
                             "with --resume, or pass --overwrite to replace it")
    path.mkdir(parents=True, exist_ok=True)
    write_toml(path / SPEC_FILE, vae.spec.to_dict())
    write_config(path, vae, config)
    save_arrays(path / PARAMS_FILE, vae.get_params())
    return path


STEP_METRIC = "checkpoint_step"
"""The metrics.csv row recording the training step the metrics were computed at."""


def trained_step(path: str | Path) -> int | None:
    """The step of the run's current parameters: the last training step in history.csv
    (written with params.safetensors at every checkpoint), or None without a history."""
    import pandas as pd

    history = Path(path) / HISTORY_FILE
    if not history.exists():
        return None
    steps = pd.read_csv(history, usecols=["step"])["step"]
    return int(steps.max()) if len(steps) else None
