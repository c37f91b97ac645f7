"""NumPyro ELBOs for the estimators of :mod:`ppl_vae.estimators`.

NumPyro's ``Trace_ELBO``, ``TraceMeanField_ELBO`` and ``RenyiELBO`` differentiate through
every sample path and add no score term on a non-reparameterized site: on a discrete or
score-function site their gradient is silently biased. ``make_elbo`` therefore picks
``TraceGraph_ELBO`` whenever the guide has such a site, and :func:`check_elbo` refuses the
biased combinations.
"""

from __future__ import annotations

from typing import Any

import numpyro.infer

from ppl_vae.estimators import IWAE, AnalyticKL, Reparam, Score
from ppl_vae.models.numpyro_backend import has_non_reparameterized_sites, score_function

_PATHWISE_ONLY = (numpyro.infer.Trace_ELBO, numpyro.infer.TraceMeanField_ELBO,
                  numpyro.infer.RenyiELBO)


def check_elbo(elbo: Any, guide: Any, *args: Any, **kwargs: Any) -> None:
    """Raise ``TypeError`` if ``elbo`` would give a biased gradient for ``guide``."""
    if isinstance(elbo, _PATHWISE_ONLY) and has_non_reparameterized_sites(guide, *args, **kwargs):
        raise TypeError(
            f"NumPyro's {type(elbo).__name__} adds no score-function term for the guide's "
            "non-reparameterized sites (discrete or score-function-marked), so its gradient "
            "would be biased; use numpyro.infer.TraceGraph_ELBO (or "
            "ppl_vae.models.numpyro_elbos.make_elbo, which chooses it)")


def make_elbo(estimator: Any, guide: Any, num_particles: int = 1, *,
              example_args: tuple = (), example_kwargs: dict | None = None) -> tuple[Any, Any]:
    """The NumPyro ELBO for ``estimator`` and the guide to pair it with.

    ``example_args`` (e.g. a minibatch) let the guide be traced once to detect
    non-reparameterized sites.
    """
    kwargs = example_kwargs or {}
    if isinstance(estimator, Score):
        return numpyro.infer.TraceGraph_ELBO(num_particles=num_particles), score_function(guide)
    discrete = has_non_reparameterized_sites(guide, *example_args, **kwargs)
    if isinstance(estimator, Reparam):
        cls = numpyro.infer.TraceGraph_ELBO if discrete else numpyro.infer.Trace_ELBO
        return cls(num_particles=num_particles), guide
    if isinstance(estimator, AnalyticKL | IWAE) and discrete:
        raise TypeError(f"the {estimator.name} estimator needs every latent site "
                        "reparameterized; this guide has a discrete or score-function site "
                        "(use the 'reparam' or 'score' estimator)")
    if isinstance(estimator, AnalyticKL):
        return numpyro.infer.TraceMeanField_ELBO(num_particles=num_particles), guide
    if isinstance(estimator, IWAE):
        return numpyro.infer.RenyiELBO(alpha=0.0, num_particles=num_particles), guide
    raise TypeError(f"no NumPyro ELBO for estimator {estimator!r}"
                    + (" (NumPyro's TraceGraph_ELBO has no baselines)"
                       if estimator.name == "score-baseline" else ""))
