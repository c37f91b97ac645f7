"""Where the cells of a grid run: a local process pool (the default) or Ray.

Both run :func:`ppl_vae.compare.cells.run_cell` on independent cells and yield
``(cell, outcome)`` as each finishes: a :class:`~ppl_vae.compare.cells.CellResult` (the local
pool's workers write their run folders under the grid's folder), a
:class:`~ppl_vae.compare.store.CellFiles` (a Ray task trains in a temporary folder on its
node and returns the files; only the driver writes under the grid's folder) or the exception.

Every worker is limited to the threads its cell was given (``threads`` / ``cpus_per_cell``,
default one) before torch or JAX is imported: torch's default threads slow several-fold when
workers oversubscribe the cores (PITFALLS: a Pyro training ran 10× slower beside two busy
processes). This module imports neither torch nor JAX, so a spawned worker sets the
environment before anything else loads them. A local pool's workers die with the process
that started them (``prctl(PR_SET_PDEATHSIG)`` on Linux), so a killed grid leaves no worker
training with its cell's lock held.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

EXECUTORS = ("local", "ray")
RAY_TASK_RETRIES = 3
"""Ray reruns a task whose worker or node died this many times, on another node if need be
(an exception the cell raised is not retried by Ray; the grid retries it once)."""
_PR_SET_PDEATHSIG = 1


def thread_env(threads: int) -> dict[str, str]:
    """Environment of a worker with ``threads`` threads: OpenMP / MKL / OpenBLAS (torch,
    NumPy), and for one thread XLA's single-threaded CPU backend (JAX)."""
    env = {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                          "OPENBLAS_NUM_THREADS")}
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return env


def limit_threads(threads: int = 1) -> None:
    """Set :func:`thread_env` and torch's thread counts."""
    os.environ.update(thread_env(threads))
    import torch

    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only settable before torch's first parallel work
            pass


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when ``parent`` ends (Linux; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _init_worker(threads: int, parent: int) -> None:
    die_with_parent(parent)
    limit_threads(threads)


def _run(cell: Any, root: str, threads: int) -> Any:
    from ppl_vae.compare.cells import run_cell

    return run_cell(cell, root, threads=threads)


class LocalPool:
    """A process pool of ``workers`` processes (default: the CPU count), started with
    ``spawn`` so that each worker is a fresh interpreter with ``threads`` threads."""

    name = "local"

    def __init__(self, workers: int | None = None, threads: int = 1) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.threads = threads

    def capacity(self) -> int:
        """How many cells run at once."""
        return self.workers

    def run(self, cells: Sequence[Any], root: str) -> Iterator[tuple[Any, Any]]:
        import multiprocessing

        if not cells:
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(self.workers, len(cells)), mp_context=context,
                                 initializer=_init_worker,
                                 initargs=(self.threads, os.getpid())) as pool:
            pending = {pool.submit(_run, cell, str(root), self.threads): cell for cell in cells}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    cell = pending.pop(future)
                    error = future.exception()
                    yield cell, error if error is not None else future.result()


class RayExecutor:
    """Each cell a Ray task on the cluster at ``address``, or on a local Ray head started for
    the run on loopback (``num_cpus`` CPUs, no dashboard) and shut down after it.

    A task asks Ray for ``cpus_per_cell`` CPUs (its threads) and ``gpus_per_cell`` GPUs
    (fractions share a GPU), trains in a temporary folder on its node and returns the cell's
    result files (:class:`~ppl_vae.compare.store.CellFiles`): the nodes need no shared
    folder, only ppl_vae installed (a local Ray inherits the driver's environment,
    ``PYTHONPATH`` included) and the dataset (built-in sets are, files must be at the same
    path; a cell whose data hash differs refuses to run). A task on a node that dies is run
    again elsewhere (:data:`RAY_TASK_RETRIES`)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, *,
                 cpus_per_cell: int = 1, gpus_per_cell: float = 0.0) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError("the Ray executor needs Ray: pip install 'ppl_vae[ray]' (or "
                              "pip install ray), or use --executor local") from None
        if isinstance(cpus_per_cell, bool) or not isinstance(cpus_per_cell, int) \
                or cpus_per_cell < 1:
            raise ValueError(f"--cpus-per-cell must be a positive integer, got {cpus_per_cell!r}")
        if not (math.isfinite(gpus_per_cell) and gpus_per_cell >= 0):
            raise ValueError(f"--gpus-per-cell must be a number >= 0, got {gpus_per_cell!r}")
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_cell = cpus_per_cell
        self.gpus_per_cell = float(gpus_per_cell)
        if address is not None:
            from ppl_vae.compare.ray_connect import check_address

            self._check_resources(check_address(address))

    def _check_resources(self, resources: dict[str, float]) -> None:
        where = f"the Ray cluster at --address {self.address}" if self.address else "Ray"
        for name, need in (("CPU", self.cpus_per_cell), ("GPU", self.gpus_per_cell)):
            if need > 0 and resources.get(name, 0.0) < need:
                raise ValueError(f"{where} has {resources.get(name, 0.0):g} {name}s, fewer than "
                                 f"the {need:g} per cell asked for; lower --{name.lower()}s-per-"
                                 f"cell{' or drop --device cuda' if name == 'GPU' else ''}")

    def capacity(self) -> int:
        """How many cells the cluster runs at once (its live nodes' CPUs and GPUs)."""
        import ray

        if not ray.is_initialized():
            return 1
        resources = ray.cluster_resources()
        slots = resources.get("CPU", 0.0) // self.cpus_per_cell
        if self.gpus_per_cell:
            slots = min(slots, resources.get("GPU", 0.0) // self.gpus_per_cell)
        return max(1, int(slots))

    def run(self, cells: Sequence[Any], root: str) -> Iterator[tuple[Any, Any]]:
        """Run ``cells`` as Ray tasks; ``root`` is the driver's, never sent to a task."""
        import ray

        from ppl_vae.compare.ray_connect import init_ray

        if not cells:
            return
        started = not ray.is_initialized()
        if started:
            init_ray(self.address, num_cpus=self.num_cpus,
                     env_vars=thread_env(self.cpus_per_cell))
        try:
            self._check_resources(ray.cluster_resources())
            task = ray.remote(num_cpus=self.cpus_per_cell, num_gpus=self.gpus_per_cell,
                              max_retries=RAY_TASK_RETRIES)(_ray_task)
            pending = {task.remote(cell, self.cpus_per_cell): cell for cell in cells}
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


def _ray_task(cell: Any, threads: int) -> Any:
    """Train and evaluate ``cell`` in a temporary folder; return its result files."""
    import tempfile

    import ray

    from ppl_vae.compare.cells import cell_dir, run_cell, write_result
    from ppl_vae.compare.store import pack

    limit_threads(threads)
    node_id = ray.get_runtime_context().get_node_id()
    with tempfile.TemporaryDirectory(prefix="ppl-vae-cell-") as tmp:
        write_result(tmp, run_cell(cell, tmp, threads=threads, node_id=node_id))
        return pack(cell_dir(tmp, cell), cell.key())


def make_executor(name: str, *, workers: int | None = None, address: str | None = None,
                  cpus_per_cell: int = 1, gpus_per_cell: float = 0.0) -> Any:
    """``"local"``: :class:`LocalPool`; ``"ray"``: :class:`RayExecutor`."""
    if name == "local":
        if address is not None:
            raise ValueError("--address names a Ray cluster; use it with --executor ray")
        if gpus_per_cell:
            raise ValueError("--gpus-per-cell asks Ray for GPUs; use it with --executor ray")
        return LocalPool(workers, threads=cpus_per_cell)
    if name == "ray":
        return RayExecutor(address, num_cpus=workers, cpus_per_cell=cpus_per_cell,
                           gpus_per_cell=gpus_per_cell)
    raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {name!r}")
