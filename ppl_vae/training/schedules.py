"""Learning-rate schedules, described once for both training engines.

:class:`LRSchedule` is a frozen description that imports neither torch nor JAX; each engine turns it
into its library's own schedule — torch's ``torch.optim.lr_scheduler`` classes over the Pyro
engine's one torch optimizer, optax schedules (and ``optax.contrib.reduce_on_plateau``) in the
NumPyro engine's optax chain — so that both run the same learning rate at every step.

With ``t`` the 0-based index of a step (the number of optimizer steps before it),
``W = warmup_steps``, ``lr = learning_rate``, ``lr_min = min_learning_rate`` and
``D`` the decay horizon (``decay_steps``; for ``cosine`` by default ``total_steps - W``):

- ``constant``: ``lr``.
- warm-up (``t < W``, any kind but ``constant`` and ``plateau``): ``lr * (t + 1) / W``.
  ``warmup`` is a warm-up followed by ``lr``.
- ``cosine`` (``t >= W``): ``lr_min + (lr - lr_min) * (1 + cos(pi * min(t - W, D) / D)) / 2``,
  so ``lr_min`` from step ``W + D`` on.
- ``exponential`` (``t >= W``): ``lr * decay_rate ** ((t - W) / D)``.
- ``step`` (``t >= W``): ``lr * decay_rate ** floor((t - W) / D)``.
- ``plateau``: starts at ``lr``; after every validation evaluation (the one at step 0
  included) the validation loss ``v`` (lower is better) updates it by torch's rule
  ``ReduceLROnPlateau(mode="min", threshold_mode="rel", cooldown=0)``: ``v`` improves on the
  best value so far when ``v < best * (1 - plateau_threshold)``; after more than
  ``plateau_patience`` evaluations in a row without improvement the learning rate becomes
  ``max(lr_now * plateau_factor, lr_min)`` and the count starts again (the best value is kept).
  Note the relative threshold on a negative loss: ``best * (1 - threshold)`` is then *above*
  ``best``, as in both libraries.

Choices, so that the two libraries can do exactly the same thing: ``exponential`` and ``step``
need ``0 < decay_rate < 1`` (1 would be a constant) and take no ``min_learning_rate`` (torch's
``ExponentialLR``/``StepLR`` have no floor), ``plateau`` takes no warm-up (torch cannot chain
``ReduceLROnPlateau`` after another scheduler) and needs ``0 < plateau_threshold < 1`` (optax's
rule needs a positive tolerance; take e.g. 1e-8 for "any improvement"). A field that does not
apply to the kind must keep its default, so a setting is never silently ignored.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ppl_vae.spec import LR_SCHEDULES as SCHEDULES

_FIELDS = {
    # the fields each kind reads, besides learning_rate and total_steps
    "constant": (),
    "warmup": ("warmup_steps",),
    "cosine": ("warmup_steps", "decay_steps", "min_learning_rate"),
    "exponential": ("warmup_steps", "decay_steps", "decay_rate"),
    "step": ("warmup_steps", "decay_steps", "decay_rate"),
    "plateau": ("min_learning_rate", "plateau_factor", "plateau_patience", "plateau_threshold"),
}


@dataclass(frozen=True)
class LRSchedule:
    """The learning rate of every step of a run (closed forms in the module docstring).

    Parameters
    ----------
    learning_rate : the base (peak) learning rate, finite and > 0.
    kind : one of :data:`SCHEDULES`.
    warmup_steps : ``W``, steps of linear warm-up (``warmup``, ``cosine``, ``exponential``,
        ``step``); ``warmup`` needs at least 1.
    decay_steps : ``D``; needed by ``exponential`` and ``step``; ``cosine`` defaults to
        ``total_steps - warmup_steps``.
    decay_rate : factor per ``D`` steps of ``exponential`` and ``step``, in (0, 1).
    min_learning_rate : the floor of ``cosine`` and ``plateau``, in [0, learning_rate).
    plateau_factor, plateau_patience, plateau_threshold : ``plateau``'s factor in (0, 1),
        patience (an integer >= 0) and relative threshold in (0, 1).
    total_steps : the run's length, the default decay horizon of ``cosine``.

    Raises
    ------
    ValueError : a field out of range, one the kind needs missing, or one it does not use set.
    """

    learning_rate: float
    kind: str = "constant"
    warmup_steps: int = 0
    decay_steps: int | None = None
    decay_rate: float = 0.1
    min_learning_rate: float = 0.0
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    plateau_threshold: float = 1e-4
    total_steps: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in SCHEDULES:
            raise ValueError(f"kind must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")
        self._number("learning_rate", low=0.0, low_open=True)
        self._integer("warmup_steps", 0)
        self._integer("decay_steps", 1, optional=True)
        self._integer("total_steps", 1, optional=True)
        self._integer("plateau_patience", 0)
        self._number("decay_rate", low=0.0, low_open=True, high=1.0)
        self._number("min_learning_rate", low=0.0, high=self.learning_rate,
                     high_name="learning_rate")
        self._number("plateau_factor", low=0.0, low_open=True, high=1.0)
        self._number("plateau_threshold", low=0.0, low_open=True, high=1.0)
        defaults = {f.name: f.default for f in fields(self)}
        used = _FIELDS[self.kind]
        for name in ("warmup_steps", "decay_steps", "decay_rate", "min_learning_rate",
                     "plateau_factor", "plateau_patience", "plateau_threshold"):
            if name not in used and getattr(self, name) != defaults[name]:
                users = [k for k, names in _FIELDS.items() if name in names]
                hint = (" (a warm-up followed by a constant rate is kind 'warmup')"
                        if self.kind == "constant" and name == "warmup_steps" else
                        " (ReduceLROnPlateau cannot follow a warm-up scheduler in torch)"
                        if self.kind == "plateau" and name == "warmup_steps" else "")
                raise ValueError(f"{name}={getattr(self, name)!r} does not apply to kind "
                                 f"{self.kind!r}{hint}; it is used by {', '.join(users)}. "
                                 f"Leave it at its default, {defaults[name]!r}")
        if self.kind == "warmup" and self.warmup_steps < 1:
            raise ValueError(f"kind 'warmup' needs warmup_steps >= 1, got {self.warmup_steps}")
        if self.kind in ("exponential", "step") and self.decay_steps is None:
            raise ValueError(f"kind {self.kind!r} needs decay_steps, an integer >= 1 (the "
                             f"steps per factor decay_rate), got None")
        if self.kind == "cosine" and self.decay_steps is None:
            if self.total_steps is None:
                raise ValueError("kind 'cosine' needs decay_steps, or total_steps to decay "
                                 "over total_steps - warmup_steps; got neither (None)")
            if self.total_steps <= self.warmup_steps:
                raise ValueError(f"kind 'cosine' without decay_steps decays over total_steps - "
                                 f"warmup_steps, which must be >= 1; got total_steps="
                                 f"{self.total_steps}, warmup_steps={self.warmup_steps}")

    # -- validation helpers
    def _integer(self, name: str, low: int, optional: bool = False) -> None:
        value = getattr(self, name)
        if value is None and optional:
            return
        if not (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                and value >= low):
            raise ValueError(f"{name} must be an integer >= {low}"
                             f"{' or None' if optional else ''}, got {value!r}")
        object.__setattr__(self, name, int(value))

    def _number(self, name: str, *, low: float, high: float = math.inf, low_open: bool = False,
                high_name: str | None = None) -> None:
        value = getattr(self, name)
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and math.isfinite(value) and (value > low if low_open else value >= low) \
            and value < high
        if not ok:
            upper = "" if high == math.inf else f" and < {high_name or high}"
            lower = f"> {low}" if low_open else f">= {low}"
            where = f" ({high_name} is {high})" if high_name else ""
            raise ValueError(f"{name} must be a finite number {lower}{upper}{where}, "
                             f"got {value!r}")
        object.__setattr__(self, name, float(value))

    # -- derived
    @property
    def horizon(self) -> int | None:
        """``D``: the decay horizon of ``cosine``, ``exponential`` and ``step``, else None."""
        if self.kind not in ("cosine", "exponential", "step"):
            return None
        if self.decay_steps is not None:
            return self.decay_steps
        assert self.total_steps is not None  # __post_init__ refuses it otherwise
        return self.total_steps - self.warmup_steps

    @property
    def on_validation(self) -> bool:
        """Whether the rate follows the validation loss (``plateau``), not the step count."""
        return self.kind == "plateau"

    def to_dict(self) -> dict[str, Any]:
        """The fields that matter for the kind (for run.json); ``LRSchedule(**d)`` rebuilds
        it. ``total_steps`` is included only where it is ``cosine``'s decay horizon."""
        out: dict[str, Any] = {"kind": self.kind, "learning_rate": self.learning_rate}
        out.update({name: getattr(self, name) for name in _FIELDS[self.kind]})
        if self.kind == "cosine" and self.decay_steps is None:
            del out["decay_steps"]
            out["total_steps"] = self.total_steps
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LRSchedule:
        """The inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass(frozen=True)
class KLWeight:
    r"""The weight :math:`w_t` of the KL term at step ``t`` (0-based): a fixed β (β-VAE,
    Higgins et al. 2017) reached by a linear KL warm-up from β₀ over N steps (Bowman et al.
    2016; Sønderby et al. 2016),

    .. math:: w_t = \beta_0 + (\beta - \beta_0) \min(1, t / N)  \quad (N > 0),
              \qquad w_t = \beta \quad (N = 0).

    The objective it weights is :func:`ppl_vae.models.objectives.kl_weighted_loss`; held-out
    evaluation always scores the unweighted bound.
    """

    beta: float = 1.0
    warmup_steps: int = 0
    warmup_start: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.beta, numbers.Real) and not isinstance(self.beta, bool)
                and math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta must be a finite number > 0 (1: the ELBO), got "
                             f"{self.beta!r}")
        if not (isinstance(self.warmup_steps, numbers.Integral)
                and not isinstance(self.warmup_steps, bool) and self.warmup_steps >= 0):
            raise ValueError(f"kl_warmup_steps must be an integer >= 0 (0: no warm-up), got "
                             f"{self.warmup_steps!r}")
        if not (isinstance(self.warmup_start, numbers.Real)
                and not isinstance(self.warmup_start, bool)
                and 0 <= self.warmup_start < self.beta):
            raise ValueError(f"kl_warmup_start must be a number in [0, beta = {self.beta:g}), "
                             f"got {self.warmup_start!r}")
        if self.warmup_start and not self.warmup_steps:
            raise ValueError(f"kl_warmup_start = {self.warmup_start:g} needs kl_warmup_steps "
                             ">= 1 (the steps over which the weight rises to beta)")

    @property
    def active(self) -> bool:
        """Whether any step's weight differs from 1."""
        return self.beta != 1.0 or self.warmup_steps > 0

    def weights(self, start: int, stop: int) -> np.ndarray:
        """:math:`w_t` for the steps ``t = start, ..., stop - 1``."""
        t = np.arange(start, stop, dtype=np.float64)
        if not self.warmup_steps:
            return np.full(t.shape, float(self.beta))
        return self.warmup_start + (self.beta - self.warmup_start) * np.minimum(
            1.0, t / self.warmup_steps)

    def to_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "warmup_steps": self.warmup_steps,
                "warmup_start": self.warmup_start}
