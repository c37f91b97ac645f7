"""How much does the gradient estimator matter? Gradient variance of ELBO estimators.

``measure``  N gradient draws at fixed parameters -> streaming moments -> tidy tables
             (:func:`gradient_variance`, :func:`measure_gradients`, :func:`summarize`)
``study``    the study of runs or specs: checkpoints x estimators x particles, optional
             training with each estimator (:func:`run_study`, :func:`write_study`)
``toys``     :class:`QuadraticToy`, a Gaussian model whose estimators' gradient moments are
             closed forms: the reference the estimators are tested against

>>> from ppl_vae.variance import gradient_variance
>>> gradient_variance(vae.model, vae.guide, x, estimators=["score", "reparam"])  # doctest: +SKIP
"""

from ppl_vae.variance.measure import (
    LEVELS,
    GradientMoments,
    gradient_variance,
    measure_gradients,
    param_group,
    summarize,
)
from ppl_vae.variance.study import (
    DEFAULT_DRAWS,
    DEFAULT_ESTIMATORS,
    DEFAULT_PARTICLES,
    RATIOS,
    StudyResult,
    Target,
    load_target,
    run_study,
    study_cost,
    variance_ratios,
    write_study,
)
from ppl_vae.variance.toys import QuadraticToy

__all__ = [
    "DEFAULT_DRAWS", "DEFAULT_ESTIMATORS", "DEFAULT_PARTICLES", "LEVELS", "RATIOS",
    "GradientMoments",
    "QuadraticToy", "StudyResult", "Target", "gradient_variance", "load_target",
    "measure_gradients", "param_group", "run_study", "study_cost", "summarize",
    "variance_ratios",
    "write_study",
]
