"""The run-folder contract: the names of a run directory's files, what counts as a run, and
the one refusal to put a new run where that would lose something.

A run directory ``runs/NAME/`` holds::

    spec.toml              SPEC_FILE: the model spec (readable by ppl_vae.spec.load)
    run.json               CONFIG_FILE: backend, dataset and split settings, seed, training
    params.safetensors     PARAMS_FILE: the latest parameters, flat names (``vae.get_params()``)
    history.csv            HISTORY_FILE: per-step / per-epoch training history
    checkpoints/           CHECKPOINT_DIR: ``latest`` and the newest complete ``step-NNNNNNNN/``
                           folders (:mod:`ppl_vae.runs.checkpoints`); ``fit(...,
                           resume=True)`` continues from them
    training_curves.png    CURVES_FILE (``ppl-vae train``)
    metrics.csv            METRICS_FILE (``ppl-vae evaluate``)
    bdmc.csv               BDMC_FILE (``ppl-vae evaluate --bdmc``): bounds on simulated data
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
    outputs.json           OUTPUTS_FILE: what each of those commands wrote, with the run id
                           and the checkpoint step of the parameters it read

``run.json``'s ``data`` settings rebuild the splits; a run without ``data.shuffle`` dates from
before splits were shuffled and rebuilds them in the source's order.

``params.safetensors`` and ``history.csv`` are rewritten at every checkpoint, so a run that
is still training (or was interrupted) loads at its last checkpoint.

Beside each run folder ``NAME`` lies its writer's folder ``.NAME.ppl-vae/``
(:mod:`ppl_vae.runs.writer`): the lock that one training process holds while it writes the
run, and the new run it builds before swapping it in.
"""

from __future__ import annotations

import os
from pathlib import Path

from ppl_vae.io import FileReadError

SPEC_FILE = "spec.toml"
CONFIG_FILE = "run.json"
PARAMS_FILE = "params.safetensors"
HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
CURVES_FILE = "training_curves.png"
METRICS_FILE = "metrics.csv"
BDMC_FILE = "bdmc.csv"
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
OUTPUTS_FILE = "outputs.json"
"""In every folder the reading commands write to: which command wrote which file, its SHA-256,
and the run id and checkpoint step it came from (:mod:`ppl_vae.runs.outputs`)."""
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


class RunLockedError(RunError):
    """Another process is writing the run folder (or, for a writer, reading it)."""


class OutsideFolderError(RunError):
    """An output path that would land outside the folder it belongs in."""


def contained(folder: str | Path, name: str | Path) -> Path:
    """``folder / name``, refused unless it resolves (symbolic links and ``..`` followed) to a
    path inside ``folder`` resolved: the one check that a file a command writes stays in its
    folder."""
    folder = Path(folder)
    path = folder / name
    root, target = folder.resolve(), path.resolve()
    if target != root and root not in target.parents:
        raise OutsideFolderError(f"{path} resolves to {target}, outside {root}; nothing was "
                                 "written. Remove the symbolic link or '..' that leads out of "
                                 f"{folder}, or choose another output folder")
    return path


def check_run_location(path: str | Path) -> Path:
    """Refuse places a run folder cannot be created at safely, before anything is created:
    the filesystem root (no folder of its own, no parent for the writer's lock) and a
    symbolic link (a swap would replace the link with a real folder, not write where it
    points). Returns ``path`` as a Path."""
    path = Path(path)
    absolute = Path(os.path.abspath(path))
    if absolute.parent == absolute:
        raise NotARunError(f"{path} is the filesystem root; a run needs a folder of its own: "
                           "choose e.g. --out runs/NAME")
    if path.is_symlink():
        raise NotARunError(f"{path} is a symbolic link to {os.path.realpath(path)}; a run is "
                           "written into a real folder, so nothing was touched: pass --out "
                           f"{os.path.realpath(path)} instead")
    return path


class CheckpointError(FileReadError):
    """A run's parameter or checkpoint file that is missing, corrupt or does not fit the model."""


STEP_METRIC = "checkpoint_step"
"""The metrics.csv row recording the training step the metrics were computed at."""


def check_replaceable(path: Path, *, overwrite: bool) -> None:
    """Refuse to put a new run at ``path`` where that would lose something.

    Allowed: nothing there, an empty folder, or a run with ``overwrite``. Refused: a file,
    a folder with files but no ``run.json`` (not ours), a run without ``overwrite``.
    """
    if not path.exists():
        return
    if not path.is_dir():
        raise NotARunError(f"{path} is a file, not a run folder; nothing was touched. "
                                "Choose another --out (a new or empty folder)")
    if is_run(path):
        if not overwrite:
            raise RunExistsError(f"{path} already holds a run; choose another --out, "
                                      "resume it with --resume, or pass --overwrite to "
                                      "replace it")
        return
    entries = sorted(p.name for p in path.iterdir())
    if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise NotARunError(
            f"{path} is a folder with {len(entries)} entries ({shown}) but no "
            f"{CONFIG_FILE}, so it is not a ppl_vae run; nothing was touched. Choose a "
            "new or empty folder for --out")
