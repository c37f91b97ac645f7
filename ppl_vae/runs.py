"""Run directories: what a trained model leaves on disk, and how to load it back.

Layout of ``runs/NAME/``::

    spec.toml              the model spec (readable by ppl_vae.spec.load)
    run.json               backend, dataset and split settings, seed, training settings
    params.safetensors     the latest parameters, flat names (``vae.get_params()``)
    history.csv            per-step / per-epoch training history
    checkpoints/           ``latest`` and the newest complete ``step-NNNNNNNN/`` folders:
                           parameters, optimizer and RNG state, history, checksums
                           (:mod:`ppl_vae.training.checkpoint`); ``fit(..., resume=True)``
                           continues from them
    ...                    metrics.csv, reports, figures (see the jobs)

``params.safetensors`` and ``history.csv`` are rewritten at every checkpoint, so a run that
is still training (or was interrupted) loads at its last checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppl_vae import spec as spec_module
from ppl_vae.io import CheckpointError, load_arrays, read_json, save_arrays, write_json, write_toml
from ppl_vae.spec import ModelSpec

SPEC_FILE = "spec.toml"
CONFIG_FILE = "run.json"
PARAMS_FILE = "params.safetensors"
HISTORY_FILE = "history.csv"


@dataclass
class Run:
    """A loaded run: its folder, spec, config (``run.json``) and the model."""

    path: Path
    spec: ModelSpec
    config: dict[str, Any]
    vae: Any
    extra: dict[str, Any] = field(default_factory=dict)

    def splits(self) -> Any:
        """The train/valid/test splits this run was trained on, rebuilt from run.json."""
        from ppl_vae.data import prepare

        data = self.config["data"]
        return prepare(data["source"], likelihood=self.spec.likelihood.name,
                       binarization=data.get("binarization", "static"),
                       dequantize=data.get("dequantize", False),
                       fractions=tuple(data.get("fractions", (0.8, 0.1, 0.1))),
                       seed=data.get("seed", 0))


def load_run(path: str | Path, backend: str | None = None, *, dtype: str = "float32",
             device: str = "cpu") -> Run:
    """Load a run directory into a VAE of ``backend`` (default: the one it was trained with)."""
    from ppl_vae.models import build

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run directory")
    spec = spec_module.load(path / SPEC_FILE)
    config = read_json(path / CONFIG_FILE)
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


class RunExistsError(FileExistsError):
    """Refusal to overwrite a run a user already has."""


def create_run(path: str | Path, vae: Any, config: dict[str, Any], *,
               overwrite: bool = False) -> Path:
    """Write a new run directory: spec, ``run.json`` (``config`` plus the backend) and params.

    An existing run is never replaced unless ``overwrite=True``.
    """
    path = Path(path)
    if (path / CONFIG_FILE).exists() and not overwrite:
        raise RunExistsError(f"{path} already holds a run; choose another --out, resume it "
                             "with --resume, or pass --overwrite to replace it")
    path.mkdir(parents=True, exist_ok=True)
    write_toml(path / SPEC_FILE, vae.spec.to_dict())
    write_json(path / CONFIG_FILE, {"backend": vae.backend, **config})
    save_arrays(path / PARAMS_FILE, vae.get_params())
    return path
