"""ppl_vae: variational autoencoders the probabilistic-programming way.

Declare a VAE once (:mod:`ppl_vae.spec`, the TOML zoo in ``models/``), build it as a Pyro or
NumPyro model/guide pair (:func:`ppl_vae.models.build`), train, evaluate and study it.
"""

from ppl_vae.spec import ModelSpec, SpecError

__all__ = ["ModelSpec", "SpecError", "__version__"]
__version__ = "0.1.0"
