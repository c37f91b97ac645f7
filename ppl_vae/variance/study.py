"""The gradient-variance study of a model or a trained run, and its report.

For each target (a run directory, a spec file or a zoo name — one posterior family each),
each training stage available (a run's checkpoints: early, middle, end; a spec: its
initialisation), each estimator and each number of particles K, :func:`run_study` measures
N gradient draws on one fixed minibatch with :func:`ppl_vae.variance.measure_gradients`,
and, optionally, trains a fresh copy of the model with each estimator
(:func:`ppl_vae.training.fit`) to record the loss against steps and wall time. The tidy tables
(``groups.csv``, ``params.csv``, ``ratios.csv``, ``training.csv``, ``skipped.csv``) and a
Markdown/HTML report (:func:`ppl_vae.reports.pages.variance_page`, which only renders the
tables) are written by :func:`write_study`.

Masked codes are the natural comparison: Bernoulli gates (``masked_laplace``) force
score-function terms into every estimator, relaxed gates (``masked_relaxed_laplace``) are
reparameterized; run both as targets of one study.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ppl_vae.estimators import get_estimator
from ppl_vae.io import write_csv_tables
from ppl_vae.models.conditioning import require_unconditioned
from ppl_vae.variance.measure import measure_gradients, summarize

DEFAULT_ESTIMATORS = ("reparam", "analytic-kl", "score", "score-baseline", "stl", "iwae", "vimco",
                      "dreg")
DEFAULT_PARTICLES = (1, 5)
DEFAULT_DRAWS = 200
"""The study's defaults finish in minutes: 200 draws give each variance a relative standard
error of about sqrt(2 / 199) ≈ 10 % (Gaussian draws), enough to rank estimators whose
variances differ by factors; K = 50 draws cost about 20 times K = 1 (see docs/tutorials/
variance.md for the measured rates)."""
RATIOS = (("score", "reparam"), ("score-baseline", "score"), ("score-nn-baseline", "score"),
          ("analytic-kl", "reparam"), ("stl", "reparam"), ("dreg", "iwae"))
"""(numerator, denominator) estimator pairs of the headline variance ratios."""

_HEAD = ["target", "family", "stage", "step"]
TRAINING_COLUMNS = ["step", "epoch", "split", "loss", "wall_time", "target", "family",
                    "estimator", "particles"]
SKIPPED_COLUMNS = [*_HEAD, "estimator", "reason"]
RATIO_COLUMNS = [*_HEAD, "particles", "group", "ratio", "variance_ratio", "cost_ratio"]
_MOMENT_COLUMNS = ["backend", "estimator", "particles", "num_draws", "seed", "group", "size",
                   "variance", "variance_se", "snr", "snr_q05", "snr_q25", "snr_q75",
                   "snr_q95", "mean_norm", "grad_norm", "seconds_per_draw",
                   "variance_x_seconds"]
GROUP_COLUMNS = [*_HEAD, *_MOMENT_COLUMNS]
PARAM_COLUMNS = [*_HEAD, *_MOMENT_COLUMNS[:5], "param", *_MOMENT_COLUMNS[5:]]
"""Columns of the tables that may be empty, so that their CSV files keep a header (the
moment columns are those of :func:`ppl_vae.variance.summarize`; a test pins them)."""


@dataclass
class Target:
    """One model of the study: a VAE, its stages (name → step, params), data and a batch."""

    name: str
    vae: Any
    stages: list[tuple[str, int, dict[str, np.ndarray]]]
    splits: Any
    batch: np.ndarray
    batch_idx: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def family(self) -> str:
        post = self.vae.spec.posterior
        gate = getattr(post, "gate", None)
        return f"{post.name} ({gate} gate)" if gate else post.name


@dataclass
class StudyResult:
    """The tidy tables of a study and what it was run with."""

    groups: pd.DataFrame
    params: pd.DataFrame
    training: pd.DataFrame
    skipped: pd.DataFrame
    settings: dict[str, Any]
    notes: list[str]

    @property
    def ratios(self) -> pd.DataFrame:
        return variance_ratios(self.groups)


# ----------------------------------------------------------------------------- targets


def _checkpoint_stages(run: Any) -> tuple[list[tuple[str, int, dict]], list[str]]:
    """early / middle / end parameters of a run, from its checkpoints and final params."""
    from ppl_vae.runs import CHECKPOINT_DIR
    from ppl_vae.runs.checkpoints import load_checkpoint

    final_step = int(run.config.get("training", {}).get("num_steps", 0))
    found = sorted((load_checkpoint(p) for p in (run.path / CHECKPOINT_DIR).glob("step-*")
                    if (p / "manifest.json").exists()), key=lambda c: c.step)
    end = run.vae.get_params()
    last = max(final_step, found[-1].step if found else 0)
    earlier = [c for c in found if c.step < last]
    chosen = earlier[:1] + ([min(earlier[1:], key=lambda c: abs(c.step - last / 2))]
                            if len(earlier) > 1 else [])
    stages = [(_stage_name(c.step, last), c.step, c.params) for c in chosen]
    stages.append(("end", last, end))
    notes = []
    if len(stages) < 3:
        notes.append(f"run {run.path.name}: {len(found)} checkpoint(s) on disk, so the stages "
                     f"are {', '.join(s for s, _, _ in stages)} only (the training job keeps "
                     "only its newest checkpoints)")
    return stages, notes


def _stage_name(step: int, last: int) -> str:
    return "early" if step <= last / 3 else "middle" if step <= 2 * last / 3 else "late"


def load_target(source: Any, backend: str | None = None, *, batch_size: int = 128,
                data: Any = None, seed: int = 0) -> Target:
    """A study target from a run directory, a spec (ModelSpec, TOML path) or a zoo name.

    A run brings its own data (``run.splits()``) and checkpoints; a spec is studied at its
    initialisation (``seed``) on ``data`` (default: the spec's ``training.dataset``). The batch
    is ``batch_size`` training points chosen with ``seed``.
    """
    from ppl_vae import runs
    from ppl_vae.data import prepare
    from ppl_vae.models import build, load_spec

    notes: list[str] = []
    if isinstance(source, str | Path) and runs.is_run(source):
        path = Path(source)
        run = runs.load_run(path, backend)
        splits = run.splits() if data is None else data
        stages, notes = _checkpoint_stages(run)
        vae, name = run.vae, path.name
    else:
        spec = load_spec(source)
        splits = data if data is not None else prepare(
            spec.training.dataset, likelihood=spec.likelihood.name, data_shape=spec.data_shape,
            binarization=spec.training.binarization, seed=seed)
        num_data = None if spec.posterior.amortized else len(splits.train)
        vae = build(spec, backend or "numpyro", seed=seed, num_data=num_data)
        stages, name = [("init", 0, vae.get_params())], spec.name
    require_unconditioned(vae.spec, "the variance study")
    train = np.asarray(splits.train, dtype=np.float32)
    if batch_size > len(train):
        raise ValueError(f"batch_size {batch_size} exceeds the {len(train)} training points")
    idx = np.sort(np.random.default_rng(seed).choice(len(train), batch_size, replace=False))
    return Target(name=name, vae=vae, stages=stages, splits=splits, batch=train[idx],
                  batch_idx=idx, notes=notes)


# ----------------------------------------------------------------------------- the study


def _model_args(target: Target) -> tuple[tuple, dict]:
    vae = target.vae
    kwargs = {}
    if not vae.spec.posterior.amortized:
        kwargs["idx"] = vae.as_index(target.batch_idx)
    return (vae.as_tensor(target.batch),), kwargs


def study_cost(targets: Sequence[Target], *, estimators: Sequence[str],
               particles: Sequence[int], num_draws: int, train_steps: int = 0) -> str:
    """What :func:`run_study` will compute, in one line: stages × estimators × K × draws,
    the gradient draws and the particles they weigh, and the trainings."""
    stages = sum(len(t.stages) for t in targets)
    configurations = stages * len(estimators) * len(particles)
    draws = configurations * num_draws
    weighed = stages * len(estimators) * sum(particles) * num_draws
    where = "; ".join(f"{t.name}: {', '.join(f'{s} (step {n})' for s, n, _ in t.stages)}"
                      for t in targets)
    line = (f"{stages} stage{'s' * (stages != 1)} ({where}) × {len(estimators)} estimators × K = "
            f"{', '.join(map(str, particles))} = {configurations} configurations × "
            f"{num_draws} draws = {draws:,} gradient draws of {weighed:,} particles")
    if train_steps:
        line += (f"; then {len(targets) * len(estimators)} trainings of {train_steps:,} "
                 "steps")
    return line


def run_study(targets: Sequence[Target], *, estimators: Sequence[str] = DEFAULT_ESTIMATORS,
              particles: Sequence[int] = DEFAULT_PARTICLES, num_draws: int = DEFAULT_DRAWS,
              seed: int = 0, train_steps: int = 0, train_particles: int = 5,
              progress: bool = False, **options: Any) -> StudyResult:
    """Measure every (target, stage, estimator, K) and optionally train with each estimator.

    Configurations an estimator cannot handle (e.g. ``stl`` on Bernoulli gates, ``analytic-kl``
    without a closed form) are recorded in ``skipped`` with the reason, not raised.
    ``train_steps`` > 0 trains a fresh copy of each target with each estimator for that many
    steps (K = ``train_particles`` for ``iwae``/``dreg``, else 1). ``progress`` shows a bar
    over the gradient draws when stderr is a terminal (tqdm: the target, its stage and step,
    the estimator and K, the time left) and a line per configuration with its draws per
    second. ``options`` go to :func:`ppl_vae.variance.measure_gradients`.
    """
    names = [get_estimator(e).label for e in estimators]
    groups, params, skipped, training = [], [], [], []
    total = sum(len(t.stages) for t in targets) * len(names) * len(particles) * num_draws
    bar = tqdm(total=total, unit="draw", disable=None if progress else True, dynamic_ncols=True)
    for target in targets:
        args, kwargs = _model_args(target)
        vae = target.vae
        for stage, step, values in target.stages:
            vae.set_params(values)
            where = f"{target.name} {stage} (step {step})"
            bar.set_description(where)
            say = (lambda line, where=where: bar.write(f"{where}: {line}")) if progress \
                else None
            head = {"target": target.name, "family": target.family, "stage": stage,
                    "step": step}
            for name, k in itertools.product(names, particles):
                bar.set_postfix_str(f"{name} K={k}")
                try:  # per K: vimco is refused at K = 1 only
                    moments = measure_gradients(vae.model, vae.guide, *args, estimators=[name],
                                                num_draws=num_draws, num_particles=[k],
                                                seed=seed, model_kwargs=kwargs,
                                                progress=say, on_draws=bar.update, **options)
                except (TypeError, ValueError) as err:
                    skipped.append({**head, "estimator": name, "particles": k,
                                    "reason": str(err)})
                    bar.total -= num_draws  # a configuration that draws nothing
                    bar.refresh()
                    continue
                groups.append(summarize(moments, "group").assign(**head))
                params.append(summarize(moments, "param").assign(**head))
        if train_steps > 0:
            training += _train_curves(target, names, train_steps, train_particles, seed,
                                      skipped, bar.write if progress else None)
    bar.close()
    settings = {"num_draws": num_draws, "seed": seed, "estimators": names,
                "particles": list(particles), "batch_size": len(targets[0].batch) if targets
                else 0, "train_steps": train_steps, "train_particles": train_particles,
                "backend": targets[0].vae.backend if targets else ""}
    notes = [n for t in targets for n in t.notes]
    return StudyResult(groups=_ordered(groups, GROUP_COLUMNS),
                       params=_ordered(params, PARAM_COLUMNS),
                       training=pd.concat(training, ignore_index=True) if training
                       else pd.DataFrame(columns=TRAINING_COLUMNS),
                       skipped=pd.DataFrame(skipped, columns=SKIPPED_COLUMNS),
                       settings=settings, notes=notes)


def _ordered(frames: list[pd.DataFrame], empty_columns: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=empty_columns)
    df = pd.concat(frames, ignore_index=True)
    return df[_HEAD + [c for c in df.columns if c not in _HEAD]]


def _train_curves(target: Target, names: list[str], steps: int, multi_particles: int,
                  seed: int, skipped: list[dict], progress: Callable | None) -> list:
    from ppl_vae.models import build
    from ppl_vae.training import NonFiniteLossError, fit

    spec, backend = target.vae.spec, target.vae.backend
    num_data = None if spec.posterior.amortized else len(target.splits.train)
    curves = []
    for name in names:
        k = multi_particles if get_estimator(name).multi_particle else 1
        vae = build(spec, backend, seed=seed, num_data=num_data)
        start = time.perf_counter()
        head = {"target": target.name, "family": target.family, "stage": "training",
                "estimator": name}
        try:
            history = fit(vae, target.splits, num_steps=steps, estimator=name, num_particles=k,
                          seed=seed, eval_every=max(1, steps // 10),
                          progress=progress is not None).history
        except (TypeError, ValueError) as err:
            skipped.append({**head, "step": 0, "reason": str(err)})
            continue
        except NonFiniteLossError as err:  # a finding, not a failure: keep the curve so far
            skipped.append({**head, "step": err.step,
                            "reason": f"training diverged: {str(err).split(';')[0]}"})
            history = err.history
        if progress is not None:
            progress(f"trained {target.name} with {name}: {time.perf_counter() - start:.1f} s")
        curves.append(history.assign(target=target.name, family=target.family, estimator=name,
                                     particles=k))
    return curves


def variance_ratios(groups: pd.DataFrame) -> pd.DataFrame:
    """Variance ratios of the :data:`RATIOS` estimator pairs, per target, stage, K and group;
    ``cost_ratio`` compares variance × seconds per draw."""
    if groups.empty:
        return pd.DataFrame(columns=RATIO_COLUMNS)
    keys = [*_HEAD, "particles", "group"]
    table = groups.set_index(keys + ["estimator"])[["variance", "variance_x_seconds"]]
    rows = []
    for top, bottom in RATIOS:
        try:
            a, b = table.xs(top, level="estimator"), table.xs(bottom, level="estimator")
        except KeyError:
            continue
        joined = a.join(b, suffixes=("_a", "_b"), how="inner")
        rows.append(pd.DataFrame({
            "ratio": f"{top} / {bottom}",
            "variance_ratio": joined["variance_a"] / joined["variance_b"],
            "cost_ratio": joined["variance_x_seconds_a"] / joined["variance_x_seconds_b"],
        }).reset_index())
    return (pd.concat(rows, ignore_index=True)[RATIO_COLUMNS] if rows
            else pd.DataFrame(columns=RATIO_COLUMNS))


# ----------------------------------------------------------------------------- output


def write_study(result: StudyResult, out_dir: str | Path) -> list[Path]:
    """Write the tidy tables as CSV and the report (``report.md``, ``report.html``)."""
    from ppl_vae.reports.pages import variance_page
    from ppl_vae.runs import REPORT_STEM, VARIANCE_TABLES

    out_dir = Path(out_dir)
    paths = write_csv_tables(result, VARIANCE_TABLES, out_dir)

    paths += list(variance_page(result).write(out_dir, REPORT_STEM))
    return paths


__all__ = ["DEFAULT_DRAWS", "DEFAULT_ESTIMATORS", "DEFAULT_PARTICLES", "RATIOS", "StudyResult",
           "Target", "load_target", "run_study", "study_cost", "variance_ratios", "write_study"]
