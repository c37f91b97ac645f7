"""Sub-commands of ``ppl-vae``; each module here is one command (see :mod:`ppl_vae.cli`)."""
