"""Likelihood evaluation of trained VAEs: ELBO, importance-sampled log p(x), AIS, units,
model metrics — per datapoint, on both backends.

>>> from ppl_vae.evaluation import log_likelihood, importance_sample, ais_log_likelihood
>>> log_px = log_likelihood(vae, x_test, num_samples=5000, seed=0)      # (N,) nats
>>> est = importance_sample(vae, x_test, 5000)                          # + stderr, ESS, ELBO
>>> ais = ais_log_likelihood(vae, x_test[:10], num_steps=500)           # tighter, slower
>>> sandwich = bdmc(vae, 20, temperatures=(100, 1000))                  # how loose, both ways

``importance``  the package's one importance sampler: log p(x) and the ELBO, chunked to a
               memory budget (PSIS k̂ and the inference gaps draw through it too)
``ais``        annealed importance sampling with NumPyro's HMC, both backends, labels
``bdmc``       bidirectional Monte Carlo: lower and upper bounds of log p(x) on data simulated
               from the model, and IS against them
``units``      nats, bits/dim, the dequantization offset
``metrics``    KL per dimension, active units, code sparsity, reconstruction, nearest
               neighbours, Parzen windows
``table``      one tidy table per split, as written by ``ppl-vae evaluate``
 The exact linear-Gaussian reference is in
:mod:`ppl_vae.data.ppca`.
"""

from ppl_vae.evaluation.ais import AISEstimate, ais_log_likelihood, sigmoid_schedule
from ppl_vae.evaluation.bdmc import (
    BDMC_COLUMNS,
    BDMCResult,
    SimulatedData,
    bdmc,
    looseness_note,
    simulate,
)
from ppl_vae.evaluation.importance import (
    DEFAULT_BUDGET,
    ChunkPlan,
    ImportanceEstimate,
    elbo,
    importance_sample,
    log_likelihood,
    log_mean_exp,
    plan_chunks,
    sampler_plan,
)
from ppl_vae.evaluation.metrics import (
    ACTIVE_UNIT_THRESHOLD,
    ActiveUnits,
    KLPerDimension,
    ParzenEstimate,
    active_units,
    code_sparsity,
    kl_per_dimension,
    model_samples,
    nearest_training_neighbours,
    parzen_log_likelihood,
    reconstruction_error,
)
from ppl_vae.evaluation.table import COLUMNS, STDERR_SOURCES, EvaluationConfig, evaluate_split
from ppl_vae.evaluation.units import LikelihoodUnits, bits_per_dim, likelihood_units

__all__ = [
    "ACTIVE_UNIT_THRESHOLD", "BDMC_COLUMNS", "COLUMNS", "DEFAULT_BUDGET", "STDERR_SOURCES",
    "AISEstimate", "ActiveUnits", "BDMCResult", "ChunkPlan", "EvaluationConfig",
    "ImportanceEstimate", "KLPerDimension", "LikelihoodUnits", "ParzenEstimate", "SimulatedData",
    "active_units", "ais_log_likelihood", "bdmc", "bits_per_dim", "code_sparsity", "elbo",
    "evaluate_split", "importance_sample", "kl_per_dimension", "likelihood_units",
    "log_likelihood", "log_mean_exp", "looseness_note", "model_samples",
    "nearest_training_neighbours", "parzen_log_likelihood", "plan_chunks", "reconstruction_error",
    "sampler_plan", "sigmoid_schedule", "simulate",
]
