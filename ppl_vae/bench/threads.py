"""Which thread count to use: torch's training epoch at one thread against all cores (and
the default, :func:`ppl_vae.threads.default_threads`), interleaved, on an otherwise unchanged
machine and with one busy process per core competing, the case where torch's default
collapses."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pandas as pd

from ppl_vae.bench.timing import interleave
from ppl_vae.threads import available_cores, default_threads, set_threads

_SPIN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


@contextlib.contextmanager
def busy_processes(count: int, seconds: float) -> Iterator[None]:
    """``count`` processes spinning a core each, for at most ``seconds``."""
    procs = [subprocess.Popen([sys.executable, "-c", _SPIN.format(seconds=seconds)])
             for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()


def thread_table(loop: Any, *, rounds: int, restore: int, max_seconds: float,
                 contention: bool = True) -> pd.DataFrame:
    """Median seconds per epoch of ``loop`` (a torch loop with ``run_epoch``) per thread
    count, under the load as found and (``contention``) with one busy process per core."""
    cores, default = available_cores(), default_threads()
    counts = sorted({1, cores, default})
    rows = []
    loads = ["as found"] + ([f"{cores} busy processes"] if contention else [])
    for load in loads:
        def timed(n: int):
            def run(r: int) -> None:
                set_threads(n)
                loop.run_epoch(r)
            return run

        context = busy_processes(cores, max_seconds) if load != "as found" \
            else contextlib.nullcontext()
        with context:
            times = interleave({n: timed(n) for n in counts}, rounds=rounds, warmup=0)
        for n, t in times.groupby("loop"):
            rows.append({"load": load, "threads": int(n), "median_s": float(t["seconds"].median()),
                         "min_s": float(t["seconds"].min()), "max_s": float(t["seconds"].max()),
                         "rounds": len(t), "default": n == default})
    set_threads(restore)
    table = pd.DataFrame(rows)
    best = table.groupby("load")["median_s"].transform("min")
    table["vs_best"] = table["median_s"] / best
    return table
