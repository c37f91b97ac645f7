"""A ``jax.jit`` applied on first call, so importing an evaluation module does not import JAX."""

from __future__ import annotations

from typing import Any

LIGHT_OPTIMIZATION = {"xla_backend_optimization_level": 1}
"""XLA CPU option for the long AIS graph: measured compile time 4.4 s instead of 7.3 s
(MNIST-sized VAE; 3.5 s instead of 4.9 s for a linear one) at equal or lower run time, since
the work is in library matmuls, not in the code LLVM optimises."""


def lazy_jit(fn: Any, static_argnums: tuple[int, ...],
             compiler_options: dict[str, Any] | None = None) -> Any:
    """``jax.jit(fn, static_argnums=..., compiler_options=...)``, built when first called."""
    compiled = None

    def call(*args: Any) -> Any:
        nonlocal compiled
        if compiled is None:
            import jax

            compiled = jax.jit(fn, static_argnums=static_argnums,
                               compiler_options=compiler_options)
        return compiled(*args)

    return call
