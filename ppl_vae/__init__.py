"""ppl_vae: variational autoencoders the probabilistic-programming way.

Declare a VAE once (:class:`ModelSpec`, the TOML zoo in ``models/``), build it as a Pyro or
NumPyro model/guide pair (:func:`build`), prepare data (:func:`prepare`), train it
(:func:`fit`), measure it (:func:`importance_sample`, :func:`log_likelihood`,
:func:`ais_log_likelihood`), diagnose its posterior (:func:`diagnose`) and study its
gradient estimators (:func:`gradient_variance`). Where each piece lives, and how data flows
between them: ``docs/architecture.md``.

>>> import ppl_vae
>>> splits = ppl_vae.prepare("mnist5k", likelihood="bernoulli")            # doctest: +SKIP
>>> vae = ppl_vae.build("laplace_laplace", backend="numpyro")               # doctest: +SKIP
>>> ppl_vae.fit(vae, splits, num_epochs=20, out_dir="runs/laplace")        # doctest: +SKIP
>>> ppl_vae.log_likelihood(vae, splits.test[:100], num_samples=5000)       # doctest: +SKIP
"""

from typing import Any

from ppl_vae.data import DataError, Splits, prepare
from ppl_vae.models import BACKENDS, build, convert, load_spec, make_elbo, zoo_names
from ppl_vae.runs import Run, load_run
from ppl_vae.spec import ModelSpec, SpecError

__version__ = "0.1.0"

_LAZY = {
    "fit": "ppl_vae.training", "FitResult": "ppl_vae.training",
    "NonFiniteLossError": "ppl_vae.training",
    "importance_sample": "ppl_vae.evaluation", "log_likelihood": "ppl_vae.evaluation",
    "ais_log_likelihood": "ppl_vae.evaluation", "evaluate_split": "ppl_vae.evaluation",
    "diagnose": "ppl_vae.diagnostics",
    "gradient_variance": "ppl_vae.variance", "run_study": "ppl_vae.variance",
}
"""Names imported on first use: these modules pull in pandas, matplotlib's and ArviZ's
helpers or tqdm, which ``import ppl_vae`` (and ``ppl-vae --help``) need not pay for."""

__all__ = ["BACKENDS", "DataError", "ModelSpec", "Run", "SpecError", "Splits", "__version__",
           "build", "convert", "load_run", "load_spec", "make_elbo", "prepare", "zoo_names",
           *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ppl_vae' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names including the lazily imported ones, so that ``dir(ppl_vae)`` and
    tab completion show ``fit``, ``log_likelihood``, ..."""
    return sorted({*globals(), *_LAZY})
