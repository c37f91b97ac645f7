"""One tidy table of a model's metrics on a split: run, split, metric, value, stderr,
stderr_source.

Rows (value is a mean over the split's datapoints unless the name says otherwise). Every
``stderr`` is a standard error of the mean, and ``stderr_source`` names what it covers
(:data:`STDERR_SOURCES`): ``"monte-carlo"`` for the likelihood estimates (the sampling error
of the estimator on these datapoints, not the spread over datapoints), ``"datapoints"`` for
other per-datapoint quantities (sd over datapoints / √N), empty with a NaN stderr for counts
and settings:

* ``elbo``, ``log_likelihood_is`` (nats; the model's log-density or log-probability),
  ``iwae_gap`` (= log_likelihood_is − elbo), ``is_ess``;
* ``nll_nats`` and ``bits_per_dim`` of the data (offset applied, see
  :mod:`ppl_vae.evaluation.units`), ``dequantization_offset_nats``;
* ``expected_log_likelihood`` (E_q log p(x | z)), ``kl`` (= expected_log_likelihood − elbo),
  the rate R = E_x KL(q(z | x) ‖ p(z)) in bits per image (nats / ln 2; the bits-back reading of
  Chen et al. 2017's VLAE) over all latent sites: ``rate_bits`` in closed form (``kl =
  "analytic"``), else ``rate_bits_mc``, the Monte Carlo mean over the importance draws with its
  Monte Carlo standard error; ``rate_bits`` is NaN (missing, not 0) without a q(z | x) with a
  density (point codes, held-out data of encoder-free models);
  ``kl_dim_<u>``, ``activity_dim_<u>``, ``active_units``, ``reconstruction_mse``;
* masked codes: ``gate_on_fraction``, ``gate_on_dim_<u>``;
* with ``ais_points``: ``ais_log_likelihood`` and ``is_log_likelihood_ais_subset`` on the
  same datapoints, ``ais_minus_is``;
* with training data: ``nn_distance_samples`` and ``nn_distance_data`` (mean Euclidean
  distance to the nearest training point of model samples / of the split's data);
* with ``parzen``: ``parzen_log_likelihood``, ``parzen_bandwidth``.

A conditional VAE is evaluated given the labels ``c`` of the split: the likelihood rows are
log p(x | c), the KL rows KL(q(z | x, c) ‖ p(z | c)), reconstructions decode with c, and the
model samples take the classes in turn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ppl_vae.evaluation import metrics
from ppl_vae.evaluation.ais import ais_log_likelihood
from ppl_vae.evaluation.importance import (
    DEFAULT_BUDGET,
    check_inputs,
    check_x,
    importance_sample,
)
from ppl_vae.evaluation.units import LikelihoodUnits, likelihood_units

COLUMNS = ["run", "split", "metric", "value", "stderr", "stderr_source"]
STDERR_SOURCES = ("monte-carlo", "datapoints", "seeds", "combined")
"""What a standard error covers: the estimator's Monte Carlo error, resampling the
datapoints, resampling the training seed (``compare``), or the last two in quadrature."""

__all__ = ["COLUMNS", "STDERR_SOURCES", "EvaluationConfig", "evaluate_split"]


@dataclass(frozen=True)
class EvaluationConfig:
    """Settings of :func:`evaluate_split` (the ``ppl-vae evaluate`` flags)."""

    num_samples: int = 5000
    seed: int = 0
    budget: int = DEFAULT_BUDGET
    ais_points: int = 0
    ais_steps: int = 500
    ais_chains: int = 16
    ais_start: str = "q"
    num_model_samples: int = 100
    parzen: bool = False
    parzen_samples: int = 1000
    progress: bool = False


@dataclass
class _Rows:
    run: str
    split: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, metric: str, value: float, stderr: float = math.nan,
            source: str = "") -> None:
        self.rows.append({"run": self.run, "split": self.split, "metric": metric,
                          "value": float(value), "stderr": float(stderr),
                          "stderr_source": source if not math.isnan(stderr) else ""})

    def add_mean(self, metric: str, values: Any, mc_stderr: Any = None) -> None:
        """Mean over datapoints with the Monte Carlo error of the mean, √Σσᵢ² / N (when the
        per-datapoint errors σᵢ are given), or the standard error over datapoints."""
        values = np.asarray(values, dtype=np.float64)
        if mc_stderr is not None:
            se = math.sqrt(np.sum(np.square(mc_stderr))) / values.size
            self.add(metric, values.mean(), se, "monte-carlo")
        else:
            se = values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else math.nan
            self.add(metric, values.mean(), se, "datapoints")

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)


def evaluate_split(vae: Any, x: Any, *, run: str = "", split: str = "test", idx: Any = None,
                   units: LikelihoodUnits | None = None, train: Any = None, valid: Any = None,
                   config: EvaluationConfig | None = None, estimate: Any = None,
                   ais_estimate: Any = None, c: Any = None) -> tuple[pd.DataFrame, list[str]]:
    """All metrics of ``vae`` on data ``x``, as a tidy DataFrame, and notes for the reader.

    ``idx`` gives the training-set rows of ``x`` for encoder-free models (without it only
    the prior-started AIS and the sample metrics are computed). ``units`` defaults to the
    likelihood's convention without dequantization. ``train`` enables the nearest-neighbour
    rows; ``valid`` chooses the Parzen bandwidth. ``estimate`` (an
    :class:`~ppl_vae.evaluation.importance.ImportanceEstimate` of ``x``) and ``ais_estimate``
    (an :class:`~ppl_vae.evaluation.ais.AISEstimate` of the first ``config.ais_points`` rows)
    are used instead of drawing them again, for callers that keep the per-datapoint values.
    ``c``: the labels of ``x``, required by a conditioned model.
    """
    config = config or EvaluationConfig()
    spec = vae.spec
    x, c = check_inputs(spec, x, idx, c, codes=False)  # an encoder-free model may take AIS
    units = units or likelihood_units(spec.likelihood, spec.data_dim)
    rows = _Rows(run, split)
    notes = [f"units: {units.note}"]
    has_q = metrics.has_encoder_codes(spec, idx)

    is_est = None
    if has_q:
        is_est = estimate
        if is_est is None:
            is_est = importance_sample(vae, x, config.num_samples, seed=config.seed, idx=idx,
                                       budget=config.budget, c=c, progress=config.progress)
        _likelihood_rows(rows, is_est, units)
        _posterior_rows(rows, vae, x, idx, config, notes, c)
        if c is not None:
            notes.append("conditional VAE: likelihoods are log p(x | c) given each datapoint's "
                         "label c, KL rows KL(q(z | x, c) ‖ p(z | c))")
    else:
        notes.append("no q(z | x) with a density for these data (no encoder; held-out data or "
                     "point codes): importance sampling, ELBO, rate and posterior metrics "
                     "skipped (rate_bits is NaN)")
        rows.add("rate_bits", math.nan)
        if config.ais_points == 0 or config.ais_start != "prior":
            raise ValueError("this model has no encoder, so these data have no q(z | x) with "
                             "a density (held-out data, or point codes): evaluate them with "
                             "AIS from the prior (ais_points > 0, ais_start='prior'; CLI: "
                             "--ais N --ais-start prior)")
    rows.add("dequantization_offset_nats", units.offset_nats)

    if config.ais_points > 0:
        _ais_rows(rows, vae, x, idx, is_est, config, notes, ais_estimate, c)
    if (train is not None or config.parzen) and not vae.has_decoder_mean:
        notes.append("sample metrics skipped: a local autoregressive decoder has no decoder "
                     "mean E[x | z]")
    elif train is not None or config.parzen:
        _sample_rows(rows, vae, x, train, valid, config, notes)
    return rows.frame(), notes


def _likelihood_rows(rows: _Rows, est: Any, units: LikelihoodUnits) -> None:
    rows.add_mean("elbo", est.elbo, est.elbo_stderr)
    rows.add_mean("log_likelihood_is", est.log_likelihood, est.stderr)
    rows.add_mean("iwae_gap", est.log_likelihood - est.elbo,
                  np.hypot(est.stderr, est.elbo_stderr))
    rows.add_mean("is_ess", est.ess)
    rows.add_mean("nll_nats", units.nats(est.log_likelihood), est.stderr)
    rows.add_mean("bits_per_dim", units.bits_per_dim(est.log_likelihood),
                  est.stderr / (units.data_dim * math.log(2.0)))
    rows.add_mean("expected_log_likelihood", est.expected_log_likelihood)
    rows.add_mean("kl", est.expected_log_likelihood - est.elbo)
    bits = 1.0 / math.log(2.0)
    if est.kl == "analytic":
        rows.add_mean("rate_bits", est.rate * bits)
    else:
        rows.add_mean("rate_bits_mc", est.rate * bits, est.rate_stderr * bits)
    rows.add("num_samples", est.num_samples)


def _posterior_rows(rows: _Rows, vae: Any, x: np.ndarray, idx: Any, config: EvaluationConfig,
                    notes: list[str], c: np.ndarray | None) -> None:
    spec = vae.spec
    if not spec.prior.factorized:
        notes.append(f"KL per dimension skipped: prior family {spec.prior.name!r} (a mixture "
                     "or a flow) does not factorise over latent dimensions")
    else:
        kl = metrics.kl_per_dimension(vae, x, idx=idx, seed=config.seed, c=c)
        for u, (value, se) in enumerate(zip(kl.kl, kl.stderr, strict=True)):
            rows.add(f"kl_dim_{u}", value, se, "datapoints")
        notes.append(f"KL per dimension: {kl.method}")
    if x.shape[0] > 1:
        au = metrics.active_units(vae, x, idx=idx, c=c)
        for u, value in enumerate(au.activity):
            rows.add(f"activity_dim_{u}", value)
        rows.add("active_units", au.count)
    if spec.posterior.gated:
        on = metrics.code_sparsity(vae, x, c=c)
        for u, value in enumerate(on):
            rows.add(f"gate_on_dim_{u}", value)
        rows.add("gate_on_fraction", on.mean())
    if vae.has_decoder_mean:
        rows.add_mean("reconstruction_mse", metrics.reconstruction_error(vae, x, idx=idx, c=c))
    else:
        notes.append("reconstruction error skipped: a local autoregressive decoder has no "
                     "decoder mean E[x | z]")


def _ais_rows(rows: _Rows, vae: Any, x: np.ndarray, idx: Any, is_est: Any,
              config: EvaluationConfig, notes: list[str], est: Any = None,
              c: np.ndarray | None = None) -> None:
    n = min(config.ais_points, x.shape[0])
    ais_idx = None if idx is None else np.asarray(idx)[:n]
    if est is None:
        est = ais_log_likelihood(vae, x[:n], num_steps=config.ais_steps,
                                 num_chains=config.ais_chains, start=config.ais_start,
                                 idx=ais_idx if config.ais_start == "q" else None,
                                 c=None if c is None else c[:n], seed=config.seed)
    rows.add_mean("ais_log_likelihood", est.log_likelihood, est.stderr)
    rows.add("ais_points", n)
    rows.add_mean("ais_acceptance", est.acceptance)
    if is_est is not None:
        rows.add_mean("is_log_likelihood_ais_subset", is_est.log_likelihood[:n],
                      is_est.stderr[:n])
        rows.add_mean("ais_minus_is", est.log_likelihood - is_est.log_likelihood[:n],
                      np.hypot(est.stderr, is_est.stderr[:n]))
    notes.append(f"AIS: first {n} datapoints, {config.ais_steps} temperatures, "
                 f"{config.ais_chains} chains, start {config.ais_start!r}; both AIS and IS "
                 "are stochastic lower bounds, the larger is the tighter")


def _sample_rows(rows: _Rows, vae: Any, x: np.ndarray, train: Any, valid: Any,
                 config: EvaluationConfig, notes: list[str]) -> None:
    n = max(config.num_model_samples, config.parzen_samples if config.parzen else 0)
    samples = metrics.model_samples(vae, n, seed=config.seed)
    if train is not None:
        train = check_x(vae.spec, train)
        d_samples, _ = metrics.nearest_training_neighbours(
            samples[:config.num_model_samples], train)
        d_data, _ = metrics.nearest_training_neighbours(x, train)
        rows.add_mean("nn_distance_samples", d_samples[:, 0])
        rows.add_mean("nn_distance_data", d_data[:, 0])
        notes.append("nearest neighbours: samples are decoder means E[x | z], z ~ p(z)"
                     + ("" if vae.spec.condition is None else
                        " (conditioned: E[x | z, c], z ~ p(z | c), the classes in turn)"))
    if config.parzen:
        if valid is None:
            raise ValueError("the Parzen estimate chooses its bandwidth on validation data: "
                             "pass valid=")
        parzen = metrics.parzen_log_likelihood(samples, x, valid=check_x(vae.spec, valid))
        rows.add_mean("parzen_log_likelihood", parzen.log_likelihood)
        rows.add("parzen_bandwidth", parzen.bandwidth)
        notes.append(f"Parzen windows: {metrics.PARZEN_WARNING}")
