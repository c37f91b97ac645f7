"""Pyro ELBOs for the estimators of :mod:`ppl_vae.estimators`."""

from __future__ import annotations

from typing import Any

import pyro.infer
from pyro import poutine

from ppl_vae.estimators import IWAE, AnalyticKL, Reparam, Score, ScoreBaseline
from ppl_vae.models.pyro_backend import score_function


def _with_baseline(guide: Any, beta: float) -> Any:
    baseline = {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": beta}}
    return poutine.infer_config(
        guide, lambda msg: baseline if msg["type"] == "sample" and not msg["is_observed"] else {})


def make_elbo(estimator: Any, guide: Any, num_particles: int = 1) -> tuple[Any, Any]:
    """The Pyro ELBO for ``estimator`` and the guide to pair it with."""
    common = {"num_particles": num_particles, "vectorize_particles": True, "max_plate_nesting": 1}
    if isinstance(estimator, Reparam):
        return pyro.infer.Trace_ELBO(**common), guide
    if isinstance(estimator, AnalyticKL):
        return pyro.infer.TraceMeanField_ELBO(**common), guide
    if isinstance(estimator, Score):
        return pyro.infer.Trace_ELBO(**common), score_function(guide)
    if isinstance(estimator, ScoreBaseline):
        elbo = pyro.infer.TraceGraph_ELBO(**common)
        return elbo, _with_baseline(score_function(guide), estimator.beta)
    if isinstance(estimator, IWAE):
        return pyro.infer.RenyiELBO(alpha=0.0, **common), guide
    raise TypeError(f"no Pyro ELBO for estimator {estimator!r}")
