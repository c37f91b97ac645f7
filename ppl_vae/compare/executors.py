"""Where the cells of a grid run: a local process pool (the default) or Ray.

Both run :func:`ppl_vae.compare.cells.run_cell` on independent cells and yield
``(cell, result or exception)`` as each finishes. Every worker is limited to one torch / XLA
thread before torch or JAX is imported: torch's default threads slow several-fold when
workers oversubscribe the cores (PITFALLS: a Pyro training ran 10× slower beside two busy
processes). This module imports neither torch nor JAX, so a spawned worker sets the
environment before anything else loads them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
"""Environment of every worker: one thread for OpenMP / MKL / OpenBLAS (torch, NumPy) and
for XLA's CPU backend (JAX)."""

EXECUTORS = ("local", "ray")


def limit_threads() -> None:
    """Set :data:`ONE_THREAD` (keeping values the user set) and torch's thread counts."""
    for name, value in ONE_THREAD.items():
        os.environ.setdefault(name, value)
    import torch

    torch.set_num_threads(1)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only settable before torch's first parallel work
            pass


def _run(cell: Any, root: str) -> Any:
    from ppl_vae.compare.cells import run_cell

    return run_cell(cell, root)


class LocalPool:
    """A process pool of ``workers`` processes (default: the CPU count), started with
    ``spawn`` so that each worker is a fresh interpreter with one thread."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1

    def run(self, cells: Sequence[Any], root: str) -> Iterator[tuple[Any, Any]]:
        import multiprocessing

        if not cells:
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(self.workers, len(cells)), mp_context=context,
                                 initializer=limit_threads) as pool:
            pending = {pool.submit(_run, cell, str(root)): cell for cell in cells}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    cell = pending.pop(future)
                    error = future.exception()
                    yield cell, error if error is not None else future.result()


class RayExecutor:
    """Each cell a Ray task (one CPU) on the cluster at ``address``, or on a local Ray head
    started for the run on loopback (``num_cpus`` CPUs, no dashboard) and shut down after it.

    The workers import ppl_vae, so it must be installed on every node (a local Ray inherits
    the driver's environment, ``PYTHONPATH`` included); each worker writes its run
    directory under the grid's folder, which the nodes must share."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError("the Ray executor needs Ray: pip install 'ppl_vae[ray]' (or "
                              "pip install ray), or use --executor local") from None
        if address is not None:
            _check_reachable(address)
        self.address = address
        self.num_cpus = num_cpus

    def run(self, cells: Sequence[Any], root: str) -> Iterator[tuple[Any, Any]]:
        import ray

        if not cells:
            return
        started = not ray.is_initialized()
        if started:
            env = {"env_vars": dict(ONE_THREAD)}
            with warnings.catch_warnings():
                # Ray starts its processes with fork + exec, which JAX's at-fork hook warns
                # about when JAX is loaded; nothing runs between the fork and the exec.
                warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called",
                                        category=RuntimeWarning)
                if self.address is None:
                    ray.init(num_cpus=self.num_cpus or os.cpu_count(),
                             include_dashboard=False, runtime_env=env, log_to_driver=False,
                             _node_ip_address="127.0.0.1")
                else:
                    ray.init(address=self.address, runtime_env=env, log_to_driver=False)
        try:
            task = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
            pending = {task.remote(cell, str(root)): cell for cell in cells}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    cell = pending.pop(ref)
                    try:
                        yield cell, ray.get(ref)
                    except ray.exceptions.RayError as err:
                        yield cell, getattr(err, "cause", None) or err
        finally:
            if started:
                ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast where no server listens at a ``host:port`` address (``ray.init`` would wait
    minutes); ``auto`` and ``ray://`` addresses are left to Ray."""
    import socket

    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as err:
        raise ConnectionError(f"no Ray cluster answers at --address {address} ({err}); start "
                              "one with `ray start --head`, or leave out --address to run on "
                              "a local Ray") from None


def _ray_task(cell: Any, root: str) -> Any:
    limit_threads()
    return _run(cell, root)


def make_executor(name: str, *, workers: int | None = None, address: str | None = None) -> Any:
    """``"local"``: :class:`LocalPool`; ``"ray"``: :class:`RayExecutor`."""
    if name == "local":
        if address is not None:
            raise ValueError("--address names a Ray cluster; use it with --executor ray")
        return LocalPool(workers)
    if name == "ray":
        return RayExecutor(address, num_cpus=workers)
    raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {name!r}")
