"""``ppl-vae bench``: the package's speed, measured against yardsticks that live here.

``references``   the standard VAE's training loop by hand, in PyTorch and in JAX/optax
``fit_loops``    ``fit``'s engine and driver, one epoch per call
``timing``       interleaved (ABAB) timing; medians, spreads, per-round ratios
``roofline``     the measured matmul rate on a workload's dominant product; FLOP counts
``throughput``   importance sampling and gradient draws against the roofline
``threads``      the thread count, with and without competing load
``scaling``      time against batch size, latent size, dataset size and K
``run``          every section, the targets, the files
"""

from ppl_vae.bench.run import BenchConfig, BenchResult, run_bench, write_bench

__all__ = ["BenchConfig", "BenchResult", "run_bench", "write_bench"]
