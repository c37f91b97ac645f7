r"""Class-label conditioning (a conditional VAE): the checks of the labels.

A spec with a ``[condition]`` table (:class:`ppl_vae.spec.ConditionSpec`) defines

.. math:: p_θ(x, z \mid c) = p_θ(x \mid z, c)\, p_θ(z \mid c), \qquad q_φ(z \mid x, c),

with c ∈ {0, …, C − 1}; the networks read one_hot(c) concatenated to their input (x for the
encoder, z for the decoder; :mod:`ppl_vae.networks`). Under ``prior = "learned"`` the prior
family's location and scale parameters become ``(C, d)`` tables, and p(z | c) uses the rows
one_hot(c) · table: N(μ_c, diag σ_c²) for ``learned-normal``
(:func:`ppl_vae.families.class_rows`). All bounds are then on log p(x | c).

Labels are checked once, where they enter the package (``fit``, ``importance_sample``, the
evaluation table, a run's data, ``vae.sample``); the programs only check that labels are
given exactly when the model is conditioned.

References
----------
Sohn, K., Lee, H. & Yan, X. (2015). Learning structured output representation using deep
conditional generative models. NeurIPS.
Kingma, D. P., Rezende, D. J., Mohamed, S. & Welling, M. (2014). Semi-supervised learning with
deep generative models. NeurIPS (the M2 model's conditioning on y).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_labels", "require_labels_iff_conditioned", "require_unconditioned"]


def require_unconditioned(spec: Any, what: str) -> None:
    """Refuse a conditioned spec in a tool that does not take class labels (yet)."""
    if spec.condition is not None:
        raise ValueError(f"{what} does not take class labels yet, so it cannot run on the "
                         f"conditional VAE {spec.name!r} ([condition]); its log p(x | c) comes "
                         "from ppl-vae evaluate (importance_sample(..., c=), "
                         "ais_log_likelihood(..., c=))")


def require_labels_iff_conditioned(spec: Any, labels: Any, name: str = "labels") -> bool:
    """Whether ``spec`` is conditioned; raises if labels are missing for a conditioned model or
    given to an unconditioned one (the one check of presence, for NumPy labels at the entry
    points and for traced ones inside the model)."""
    cond = spec.condition
    if cond is None:
        if labels is not None:
            raise ValueError(f"model {spec.name!r} is not conditioned on a label (its spec has "
                             "no [condition] table); call it without c=")
        return False
    if labels is None:
        raise ValueError(f"model {spec.name!r} is conditioned on a class label ([condition] "
                         f"classes = {cond.classes}): pass c= (the {name}: one integer in "
                         f"0..{cond.classes - 1} per datapoint)")
    return True


def check_labels(spec: Any, labels: Any, num_data: int, name: str = "labels"
                 ) -> np.ndarray | None:
    """Labels of ``num_data`` datapoints for ``spec``, checked: int64 ``(N,)`` in
    ``[0, classes)``, or None for a model without ``[condition]`` (which takes none)."""
    if not require_labels_iff_conditioned(spec, labels, name):
        return None
    cond = spec.condition
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu()
    values = np.asarray(labels)
    if values.shape != (num_data,):
        raise ValueError(f"{name} must have one label per datapoint, shape ({num_data},); got "
                         f"{values.shape}")
    if values.size and not (np.issubdtype(values.dtype, np.integer)
                            or (np.issubdtype(values.dtype, np.floating)
                                and np.all(np.isfinite(values))
                                and np.all(values == np.round(values)))):
        raise ValueError(f"{name} must be integer class labels, got dtype {values.dtype}")
    values = values.astype(np.int64)
    bad = (values < 0) | (values >= cond.classes)
    if bad.any():
        raise ValueError(f"{name} must lie in 0..{cond.classes - 1} ([condition] classes = "
                         f"{cond.classes}); found {int(values[bad][0])}")
    return values
