"""Arrays too large for this machine, refused before they are allocated.

The estimates are lower bounds (the weight matrices of the networks' hidden layers, one
float per particle, datapoint and pixel), so a refusal is never wrong: what is refused could
not have been allocated. What passes may still be too large for other reasons.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ppl_vae.networks import NetworkSpec, layer_sizes


class MemoryRequestError(ValueError):
    """A request whose arrays cannot fit into the memory this machine has available."""


def available_bytes() -> int:
    """Memory available to a new allocation: Linux's ``MemAvailable``, else all of RAM."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def format_bytes(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if num_bytes < 1024 or unit == "PiB":
            return f"{num_bytes:.3g} {unit}"
        num_bytes /= 1024
    raise AssertionError("unreachable")


def check_fits(num_bytes: int, what: str, fix: str) -> None:
    """Refuse (:class:`MemoryRequestError`) when ``num_bytes`` exceed the available memory."""
    available = available_bytes()
    if num_bytes > available:
        raise MemoryRequestError(f"{what} needs at least {format_bytes(num_bytes)}, more than the "
                                 f"{format_bytes(available)} of memory available; {fix}")


def min_parameter_count(spec: Any, num_data: int | None = None) -> int:
    """A lower bound on a spec's number of parameters: its MLP weight matrices (for
    convolutional nets only those between hidden layers) and its per-datapoint codes."""
    def weights(net: NetworkSpec | None, inputs: int, outputs: int) -> int:
        if net is None:
            return 0
        if net.kind != "mlp":
            inputs = outputs = 1
        return sum(a * b for a, b in layer_sizes(inputs, net, outputs))

    count = weights(spec.decoder, spec.latent_dim, spec.data_dim)
    if spec.posterior.amortized:
        count += weights(spec.encoder, spec.data_dim, spec.latent_dim)
    else:
        count += 2 * spec.latent_dim * (num_data or 1)
    return count


def check_model_fits(spec: Any, num_data: int | None = None) -> None:
    """Refuse a spec whose initial parameters (float64) cannot be allocated."""
    count = min_parameter_count(spec, num_data)
    check_fits(8 * count, f"spec {spec.name!r} (latent_dim {spec.latent_dim}, encoder hidden "
               f"{list(spec.encoder.hidden) if spec.encoder else []}, decoder hidden "
               f"{list(spec.decoder.hidden)}: at least {count:.3g} parameters)",
               "make latent_dim or the hidden layers smaller")


def check_particles_fit(spec: Any, num_particles: int, batch_size: int, *,
                        itemsize: int = 4, flag: str = "--particles") -> None:
    """Refuse ``num_particles`` draws of a batch whose decoder outputs (one float per particle,
    datapoint and value) cannot be allocated."""
    check_fits(itemsize * num_particles * batch_size * spec.data_dim,
               f"{flag} {num_particles} with batch size {batch_size} ({spec.data_dim} values "
               "per datapoint)", f"use fewer particles ({flag}) or a smaller batch")
