"""ppl_vae: variational autoencoders the probabilistic-programming way.

Declare a VAE once (:mod:`ppl_vae.spec`, the TOML zoo in ``models/``), build it as a Pyro or
NumPyro model/guide pair (:func:`ppl_vae.models.build`), train it (:func:`fit`), evaluate it
(:mod:`ppl_vae.evaluate`), study its gradients (:mod:`ppl_vae.variance`) and diagnose its
posterior (:mod:`ppl_vae.diagnostics`).
"""

from typing import Any

from ppl_vae.spec import ModelSpec, SpecError

__all__ = ["FitResult", "ModelSpec", "NonFiniteLossError", "SpecError", "__version__", "fit"]
__version__ = "0.1.0"

_TRAINING = ("FitResult", "NonFiniteLossError", "fit")


def __getattr__(name: str) -> Any:
    # Training pulls in torch and JAX; import it on first use so `import ppl_vae` stays light.
    if name in _TRAINING:
        from ppl_vae import train

        return getattr(train, name)
    raise AttributeError(f"module 'ppl_vae' has no attribute {name!r}")
