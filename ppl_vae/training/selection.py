"""Validation selection and early stopping: which parameters a run keeps, and when it stops.

Every validation evaluation (step 0 included) is one observation of the criterion's loss
(−bound per datapoint, lower is better). The best so far is the lowest loss, the earliest on
a tie, so the selected step is the argmin of the validation history. An evaluation that does
not improve on it is a *bad* evaluation; with ``patience = P`` training stops after P bad
evaluations in a row (Prechelt 1998, "Early stopping — but when?"; pythae keeps the best model
on its validation loss the same way).

``select = "best-valid"`` keeps the parameters of the best evaluation (a copy is taken at each
improvement); ``"last"`` keeps the last ones. Either way the last training state stays in the
checkpoints for ``resume``, and the selection's state (best step, best loss, bad evaluations and
the best parameters) is saved with every checkpoint, so a resumed run selects and stops exactly
as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ppl_vae.spec import SELECTIONS

_ARRAY_PREFIX = "selection/"


@dataclass
class Selection:
    """The best validation loss so far, its step and parameters, and the bad evaluations since.

    ``best_params`` is None until the first evaluation, and always for ``select = "last"``.
    """

    select: str = "best-valid"
    patience: int | None = None
    best_step: int | None = None
    best_loss: float = math.inf
    bad_evaluations: int = 0
    best_params: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.select not in SELECTIONS:
            raise ValueError(f"select must be one of {', '.join(SELECTIONS)}; got "
                             f"{self.select!r}")
        if self.patience is not None and not (isinstance(self.patience, int)
                                              and not isinstance(self.patience, bool)
                                              and self.patience >= 1):
            raise ValueError(f"patience must be an integer >= 1 (evaluations without "
                             f"improvement before training stops), or None to train every "
                             f"step; got {self.patience!r}")

    def observe(self, step: int, loss: float, params: Callable[[], dict[str, np.ndarray]]
                ) -> None:
        """Record the validation ``loss`` at ``step``; ``params()`` gives the parameters then
        (called only on an improvement, and only when they are kept)."""
        if loss < self.best_loss:  # a NaN never improves
            self.best_step, self.best_loss, self.bad_evaluations = step, float(loss), 0
            if self.select == "best-valid":
                self.best_params = params()
        else:
            self.bad_evaluations += 1

    @property
    def stopped(self) -> bool:
        """Whether patience has run out: ``patience`` bad evaluations in a row."""
        return self.patience is not None and self.bad_evaluations >= self.patience

    def kept_params(self, current: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The parameters the run keeps, given the ``current`` (last) ones."""
        return current if self.best_params is None else self.best_params

    def kept_step(self, step: int) -> int:
        """The step of :meth:`kept_params` when training is at ``step``."""
        return step if self.best_params is None else int(self.best_step)

    # -- checkpoint state
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able counters, arrays) for a checkpoint."""
        meta = {"best_step": self.best_step, "best_loss": self.best_loss,
                "bad_evaluations": self.bad_evaluations, "patience": self.patience,
                "kept_best": self.best_params is not None}
        arrays = {f"{_ARRAY_PREFIX}{k}": v for k, v in (self.best_params or {}).items()}
        return meta, arrays

    def load_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Put back what :meth:`state` saved (a run resumed mid-patience goes on counting)."""
        self.best_step = meta["best_step"]
        self.best_loss = float(meta["best_loss"])
        self.bad_evaluations = int(meta["bad_evaluations"])
        best = {k[len(_ARRAY_PREFIX):]: v for k, v in arrays.items()
                if k.startswith(_ARRAY_PREFIX)}
        self.best_params = best if self.select == "best-valid" and best else None

    def record(self, step: int, criterion: str) -> dict[str, Any]:
        """What run.json says of the selection when training is at ``step``."""
        return {"select": self.select, "criterion": criterion, "step": self.kept_step(step),
                "best_valid_step": self.best_step,
                "best_valid_loss": None if self.best_step is None else self.best_loss,
                "last_step": step, "patience": self.patience,
                "stopped_early": self.stopped}
