"""Training by stochastic variational inference: :func:`fit`, on either backend.

``svi``              fit(): the entry point: checks, run directory, resume, one engine per backend
``loop``             the backend-independent driver: steps, evaluation, checkpoints, history
``selection``        validation selection and early stopping: the kept step, patience
``schedules``        learning-rate schedules and the KL weight (β, warm-up), described once
``batches``          training data: checks at fit time, each epoch's order, dynamic binarization
``pyro_engine``      the Pyro engine: ``loss_and_grads`` + ``PyroOptim`` (and torch's
                     ``lr_scheduler``) on a torch device
``numpyro_engine``   the NumPyro engine: ``SVI.update`` under ``jax.lax.scan``, jitted per chunk,
                     optax schedules
"""

from ppl_vae.training.loop import DivergenceError, NonFiniteLossError, TrainingStoppedError
from ppl_vae.training.schedules import SCHEDULES, KLWeight, LRSchedule
from ppl_vae.training.selection import SELECTIONS
from ppl_vae.training.svi import CLIP_NORM, OPTIMIZERS, FitResult, fit

__all__ = ["CLIP_NORM", "OPTIMIZERS", "SCHEDULES", "SELECTIONS", "DivergenceError", "FitResult",
           "KLWeight", "LRSchedule", "NonFiniteLossError", "TrainingStoppedError", "fit"]
