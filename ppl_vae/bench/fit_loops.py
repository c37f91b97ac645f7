"""``ppl_vae.fit``'s own training loop, one epoch at a time, for interleaved timing.

:class:`FitLoop` builds the engine ``fit`` builds (``training.svi``) and drives it through
``fit``'s driver (``training.loop.run_training``) one epoch per call, continuing the same
engine: what is timed is exactly ``fit``'s per-epoch work (the chunked steps, the NaN guard,
the history), without its one-off set-up (checks, run directory) and without validation or
checkpoints, which the references do not have either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ppl_vae.estimators import Reparam
from ppl_vae.runs.checkpoints import Checkpoint
from ppl_vae.training import batches
from ppl_vae.training.loop import Plan, run_training
from ppl_vae.training.schedules import LRSchedule
from ppl_vae.training.selection import Selection
from ppl_vae.training.svi import MAX_CHUNK, _make_engine


class FitLoop:
    """``fit(vae, x, batch_size=B, learning_rate=lr, estimator="reparam", seed=seed)``, an
    epoch per :meth:`run_epoch`."""

    def __init__(self, vae: Any, x: np.ndarray, *, batch_size: int, learning_rate: float,
                 seed: int, device: str | None = None) -> None:
        self.name = f"ppl_vae.fit, {'Pyro' if vae.backend == 'pyro' else 'NumPyro'}"
        self.data = batches.prepare_training_data(vae.spec, x, None, seed=seed)
        steps = batches.steps_per_epoch(self.data.num_data, batch_size)
        self.steps_per_epoch = steps
        self.plan = dict(batch_size=batch_size, steps_per_epoch=steps, seed=seed,
                         eval_every=None, checkpoint_every=None, max_chunk=min(MAX_CHUNK, steps),
                         learning_rate=learning_rate)
        self.engine = _make_engine(vae, "adam", LRSchedule(learning_rate), estimator=Reparam(),
                                   eval_estimator=Reparam(), num_particles=1, seed=seed,
                                   num_data=self.data.num_data, example_batch=x[:batch_size],
                                   example_labels=None, device=device,
                                   max_chunk=self.plan["max_chunk"])

    def run_epoch(self, epoch: int) -> float:
        """Train epoch ``epoch`` (epochs must come in order); the mean per-datapoint loss."""
        start = None if epoch == 0 else Checkpoint(
            path=Path(), step=epoch * self.steps_per_epoch, params={}, arrays={},
            state={"elapsed": 0.0}, history_csv="")
        plan = Plan(total_steps=(epoch + 1) * self.steps_per_epoch, **self.plan)
        history = run_training(self.engine, self.data, plan, Selection(select="last"),
                               start=start, progress=False).history
        return float(history["loss"].iloc[-self.steps_per_epoch:].mean())
