r"""Did the variational posterior work? Diagnostics of a trained VAE's guide, with ArviZ.

>>> from ppl_vae.diagnostics import diagnose
>>> result = diagnose(vae, x_test[:200], reference_rows=[0, 1, 2, 3])   # doctest: +SKIP
>>> result.khat_summary                  # datapoints per Pareto-k̂ band   # doctest: +SKIP
>>> result.inference_data().to_netcdf("diagnostics.nc")                   # doctest: +SKIP

The recipe of Yao et al. (2018), per datapoint x:

* :func:`importance_weights` and :func:`psis` — draws z_s ~ q(z | x) weighted by
  log p(x, z_s) − log q(z_s | x), and the Pareto k̂ of those weights: < 0.5 good,
  0.5–0.7 ok, > 0.7 unreliable; the reliable range ends at min(1 − 1/log₁₀ S, 0.7)
  (Vehtari et al. 2024) — :func:`khat_threshold`, :func:`khat_bands`, :func:`khat_summary`;
* :func:`mcmc_reference` — NUTS on p(z | x) with the decoder and prior fixed, R-hat, ESS
  and MCSE from ArviZ; :func:`compare_with_reference` and :func:`reference_distances`
  compare the guide with it;
* :func:`inference_gaps` — approximation and amortization gaps (Cremer et al. 2018);
* :func:`posterior_collapse` — KL per latent dimension and active units;
* :func:`khat_values_verdict`, :func:`ess_verdict` — the one judgement (good, caution, bad)
  of k̂ and importance ESS that the run report, ``compare`` and ``diagnose`` all print;
* :func:`diagnose` — all of it, as a :class:`Diagnosis` that renders an ArviZ
  InferenceData (conversion in :mod:`ppl_vae.diagnostics.inference_data`) and one tidy
  table; its figures and report page are in :mod:`ppl_vae.reports`.

Both backends are accepted; MCMC and the per-datapoint optimization run in JAX on a
NumPyro copy of a Pyro model's parameters. Modules: ``psis``, ``mcmc``, ``gaps``,
``collapse``, ``inference_data``, ``verdicts``, ``diagnose``.

References
----------
Yao, Y., Vehtari, A., Simpson, D. & Gelman, A. (2018). Yes, but did it work?: Evaluating
variational inference. ICML.
Vehtari, A., Simpson, D., Gelman, A., Yao, Y. & Gabry, J. (2024). Pareto smoothed
importance sampling. JMLR 25(72).
Cremer, C., Li, X. & Duvenaud, D. (2018). Inference suboptimality in variational
autoencoders. ICML.
"""

from ppl_vae.diagnostics.collapse import posterior_collapse
from ppl_vae.diagnostics.diagnose import Diagnosis, diagnose
from ppl_vae.diagnostics.gaps import GapResult, inference_gaps
from ppl_vae.diagnostics.mcmc import (
    MCMCReference,
    check_continuous_latents,
    compare_with_reference,
    convergence_summary,
    energy_distance,
    mcmc_reference,
    reference_distances,
)
from ppl_vae.diagnostics.psis import (
    BANDS,
    KHAT_GOOD,
    KHAT_OK,
    ImportanceWeights,
    PSISResult,
    importance_weights,
    khat_bands,
    khat_summary,
    khat_threshold,
    psis,
)
from ppl_vae.diagnostics.verdicts import Verdict, ess_verdict, khat_values_verdict, khat_verdict

__all__ = [
    "BANDS", "KHAT_GOOD", "KHAT_OK", "Diagnosis", "GapResult", "ImportanceWeights",
    "MCMCReference", "PSISResult", "Verdict", "check_continuous_latents",
    "compare_with_reference", "convergence_summary", "diagnose", "energy_distance", "ess_verdict",
    "importance_weights", "inference_gaps", "khat_bands", "khat_summary", "khat_threshold",
    "khat_values_verdict", "khat_verdict",
    "mcmc_reference", "posterior_collapse", "psis", "reference_distances",
]
