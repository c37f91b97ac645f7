"""CPU threads for torch (Pyro) and XLA (NumPyro): ``fit(threads=...)``, ``ppl-vae --threads``.

torch's default, one thread per core, collapses when other processes busy the same cores:
its workers spin-wait for each other at every operation (measured on a shared 2-core machine:
a Pyro training 10x slower with two other busy processes). The default here,
:func:`default_threads`, is the cores this process may use less the load the rest of the
machine puts on them (the 1-minute load average), at least 1: all cores on an idle machine,
one on a busy one; never more than ``OMP_NUM_THREADS`` where it is set. ``ppl-vae bench``
measures the choices on the user's machine.

XLA fixes its CPU thread pool when JAX starts its backend: a thread count given after JAX
computed anything applies to torch only; one thread is XLA's single-threaded Eigen
(``--xla_cpu_multi_thread_eigen=false``).
"""

from __future__ import annotations

import os
import sys

_SINGLE_THREADED_XLA = "--xla_cpu_multi_thread_eigen=false"


def available_cores() -> int:
    """Logical cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """Cores available less the machine's 1-minute load average (rounded), at least 1, and
    at most ``OMP_NUM_THREADS`` when the environment sets it."""
    cores = available_cores()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) >= 1:
        cores = min(cores, int(env))
    return max(1, min(cores, cores - round(load)))


_chosen: int | None = None
"""The count last given explicitly to :func:`set_threads` in this process."""


def check_threads(threads: int | str | None) -> int:
    """A thread count from ``threads``: a positive integer, or ``None``/``"auto"``: the count
    set explicitly before in this process (``ppl-vae --threads N``, ``set_threads(N)``), else
    :func:`default_threads`."""
    if threads is None or threads == "auto":
        return _chosen or default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer or 'auto', got {threads!r}")
    return threads


def set_threads(threads: int | str | None) -> int:
    """Use ``threads`` CPU threads in torch (and, if JAX has not started its backend yet, in
    XLA); returns the number set. Before torch is imported this only sets
    ``OMP_NUM_THREADS``, which torch reads when it loads (so ``ppl-vae --help`` stays fast)."""
    global _chosen
    n = check_threads(threads)
    if threads not in (None, "auto"):
        _chosen = n
    torch = sys.modules.get("torch")
    if torch is None:
        os.environ["OMP_NUM_THREADS"] = str(n)
    elif torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if n == 1 and not _jax_started():
        flags = os.environ.get("XLA_FLAGS", "")
        if _SINGLE_THREADED_XLA not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {_SINGLE_THREADED_XLA}".strip()
    return n


def _jax_started() -> bool:
    jax = sys.modules.get("jax")
    if jax is None:
        return False
    from jax._src import xla_bridge

    return bool(getattr(xla_bridge, "_backends", None))
