"""``ppl-vae bench``: every measurement of the package in one process, written as tables.

Sections (each a tidy table, CSV, and all of them in ``bench.json``):

``training``    seconds per epoch of ``fit`` on Pyro and NumPyro and of the hand-written
                PyTorch and JAX/optax loops (:mod:`ppl_vae.bench.references`), interleaved
                epoch by epoch within each framework; ``ratios``: fit/Pyro ÷ PyTorch,
                fit/NumPyro ÷ JAX, and Pyro ÷ NumPyro (rounds of two blocks run one after
                the other).
``throughput``  importance sampling (K particles per image) and gradient draws against the
                matmul roofline (:mod:`ppl_vae.bench.roofline`).
``threads``     the torch epoch at 1 thread, all cores and the default, without and with
                competing load.
``scaling``     time against batch size, latent size, dataset size and K, with a figure.

All on the standard VAE (``gaussian_gaussian``: 784-400-20 MLPs, Bernoulli pixels) and
MNIST-5k. Absolute times depend on the machine and its load at that moment; the ratios,
taken between neighbouring measurements, are what carries over.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ppl_vae.bench.scaling import ScalingGrid

SPEC = "gaussian_gaussian"
LEARNING_RATE = 1e-3
PAIRS = [("ppl_vae.fit, Pyro", "hand-written PyTorch"),
         ("ppl_vae.fit, Pyro", "hand-written PyTorch, fused Adam"),
         ("ppl_vae.fit, NumPyro", "hand-written JAX/optax"),
         ("ppl_vae.fit, Pyro", "ppl_vae.fit, NumPyro")]
TARGETS = {("training", "ppl_vae.fit, Pyro", "hand-written PyTorch"): ("ratio", "<=", 1.15),
           ("training", "ppl_vae.fit, Pyro", "hand-written PyTorch, fused Adam"): ("ratio", "<=",
                                                                                  1.12),
           ("training", "ppl_vae.fit, NumPyro", "hand-written JAX/optax"): ("ratio", "<=", 1.05),
           ("throughput", "pyro", "importance sampling"): ("fraction_of_roofline", ">=", 0.70),
           ("throughput", "numpyro", "importance sampling"): ("fraction_of_roofline", ">=", 0.70),
           ("throughput", "pyro", "gradient draws (reparam)"): ("fraction_of_roofline", ">=",
                                                                 0.30),
           ("throughput", "numpyro", "gradient draws (reparam)"): ("fraction_of_roofline", ">=",
                                                                    0.50)}
"""The targets of the speed issues (15, 27), checked against the tables."""


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Sizes of every section; :meth:`quick` is a seconds-long harness check."""

    backends: tuple[str, ...] = ("pyro", "numpyro")
    device: str | None = None
    threads: int = 1
    train_images: int = 4000
    batch_size: int = 128
    epochs: int = 12
    warmup: int = 2
    is_images: int = 100
    num_samples: int = 5000
    blocks: int = 5
    draws_numpyro: int = 256
    draws_pyro: int = 64
    variance_blocks: int = 3
    thread_rounds: int = 4
    thread_contention: bool = True
    scaling: ScalingGrid | None = ScalingGrid()

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        # every section runs, each as small as it goes: on NumPyro every new shape compiles
        grid = ScalingGrid(batch_sizes=(), latent_sizes=(), dataset_sizes=(),
                           num_samples=(50, 100), base_batch=32, base_data=256, is_images=2,
                           repeats=1)
        return cls(**{"train_images": 256, "batch_size": 64, "epochs": 2, "warmup": 1,
                      "is_images": 2, "num_samples": 100, "blocks": 2, "draws_numpyro": 4,
                      "draws_pyro": 2, "variance_blocks": 1, "thread_rounds": 1,
                      "thread_contention": False, "scaling": grid, **overrides})


@dataclasses.dataclass
class BenchResult:
    """The tables of one ``ppl-vae bench`` run."""

    config: BenchConfig
    machine: dict[str, Any]
    training_times: pd.DataFrame
    training: pd.DataFrame
    ratios: pd.DataFrame
    throughput: pd.DataFrame
    threads: pd.DataFrame
    scaling: pd.DataFrame | None
    targets: pd.DataFrame


def run_bench(config: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Run every section of the bench (see the module notes)."""
    from ppl_vae.data import prepare
    from ppl_vae.models import load_spec
    from ppl_vae.reports import machine_description
    from ppl_vae.threads import default_threads, set_threads

    say = progress or (lambda line: None)
    devices = _devices(config)  # first: a device that is not there fails before any work
    chosen_default = default_threads()
    set_threads(config.threads)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    spec = load_spec(SPEC)
    splits = prepare("mnist5k", likelihood="bernoulli")
    x = splits.train[:config.train_images]
    times, training, ratios = training_section(spec, x, config, say)
    throughput = throughput_section(spec, splits, config, say)
    threads = pd.DataFrame()
    if "pyro" in config.backends:
        threads = threads_section(spec, x, config, say)
    scaling = None
    if config.scaling is not None:
        from ppl_vae.bench.scaling import scaling_table

        scaling = scaling_table(spec, splits.train, list(config.backends), config.scaling,
                                device=config.device, progress=say)
    import torch

    machine = {"description": machine_description(), "torch_threads": torch.get_num_threads(),
               "default_threads": chosen_default, "load_average_before": load_before,
               "load_average_after": os.getloadavg()[0],
               "seconds": time.perf_counter() - started, "device": devices}
    return BenchResult(config=config, machine=machine, training_times=times, training=training,
                       ratios=ratios, throughput=throughput, threads=threads, scaling=scaling,
                       targets=check_targets(ratios, throughput))


def _devices(config: BenchConfig) -> dict[str, str]:
    out = {}
    if "pyro" in config.backends:
        from ppl_vae.models.pyro_backend import resolve_device

        out["pyro"] = str(resolve_device(config.device or "cpu"))
    if "numpyro" in config.backends:
        from ppl_vae.models.numpyro_backend import resolve_device

        out["numpyro"] = str(resolve_device(config.device))
    return out


def training_section(spec: Any, x: Any, config: BenchConfig, say: Callable[[str], None]
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from ppl_vae.bench.fit_loops import FitLoop
    from ppl_vae.bench.references import JaxReference, TorchReference, check_reference_spec
    from ppl_vae.bench.timing import interleave, summarize
    from ppl_vae.models import build, init_params

    check_reference_spec(spec)
    params = init_params(spec, seed=0)
    common = {"batch_size": config.batch_size, "learning_rate": LEARNING_RATE, "seed": 0}
    blocks: dict[str, dict[str, Callable[[int], object]]] = {}
    for backend in config.backends:
        if backend == "pyro":
            refs = [TorchReference(x, params, floor=spec.scale_floor, fused_adam=fused_adam,
                                   device=config.device or "cpu", **common)
                    for fused_adam in (False, True)]
            vae = build(spec, "pyro", seed=0, device=config.device or "cpu")
        else:
            refs = [JaxReference(x, params, floor=spec.scale_floor, device=config.device,
                                 **common)]
            vae = build(spec, "numpyro", seed=0)
        fit_loop = FitLoop(vae, x, device=config.device,
                           epochs=config.warmup + config.epochs, **common)
        blocks[backend] = {fit_loop.name: fit_loop.run_epoch,
                           **{ref.name: ref.run_epoch for ref in refs}}
    # One interleaved block per framework: the first JAX loop after a torch loop measured
    # 10-20% slower every time (a rotation kept fit on NumPyro there in every round), so no
    # block switches framework; Pyro / NumPyro pairs the rounds of two blocks run back to back.
    loops = {name: run for block in blocks.values() for name, run in block.items()}
    say(f"training: {len(loops)} loops interleaved by framework, {config.epochs} epochs after "
        f"{config.warmup} warm-up, {len(x)} images, batch {config.batch_size}")
    times = pd.concat([interleave(block, rounds=config.epochs, warmup=config.warmup)
                       for block in blocks.values()], ignore_index=True)
    pairs = [(a, b) for a, b in PAIRS if a in loops and b in loops]
    training, ratios = summarize(times, pairs)
    training["images_per_s"] = len(x) // config.batch_size * config.batch_size \
        / training["median_s"]
    for row in ratios.itertuples():
        say(f"  {row.loop} / {row.versus}: {row.ratio:.3f} "
            f"(quartiles {row.ratio_q25:.3f}-{row.ratio_q75:.3f})")
    return times, training, ratios


def throughput_section(spec: Any, splits: Any, config: BenchConfig,
                       say: Callable[[str], None]) -> pd.DataFrame:
    from ppl_vae.bench.throughput import importance_throughput, variance_throughput
    from ppl_vae.models import build

    rows = []
    for backend in config.backends:
        kwargs = {"device": config.device or "cpu"} if backend == "pyro" else {}
        vae = build(spec, backend, seed=0, **kwargs)
        rows.append(importance_throughput(vae, splits.test[:config.is_images],
                                          config.num_samples, blocks=config.blocks,
                                          device=config.device))
        draws = config.draws_pyro if backend == "pyro" else config.draws_numpyro
        rows.append(variance_throughput(vae, splits.train[:config.batch_size],
                                        estimator="reparam", num_draws=draws,
                                        blocks=config.variance_blocks, device=config.device))
        for row in rows[-2:]:
            say(f"{backend} {row['workload']}: {row['per_second']:.4g} {row['unit']}, "
                f"{row['gflops']:.1f} GFLOP/s, {100 * row['fraction_of_roofline']:.0f}% of "
                f"the roofline ({row['roofline_gflops']:.1f} GFLOP/s on {row['product']})")
    return pd.DataFrame(rows)


def threads_section(spec: Any, x: Any, config: BenchConfig,
                    say: Callable[[str], None]) -> pd.DataFrame:
    from ppl_vae.bench.references import TorchReference
    from ppl_vae.bench.threads import thread_table
    from ppl_vae.models import init_params

    ref = TorchReference(x, init_params(spec, seed=0), batch_size=config.batch_size,
                         learning_rate=LEARNING_RATE, seed=0, floor=spec.scale_floor)
    table = thread_table(ref, rounds=config.thread_rounds, restore=config.threads,
                         max_seconds=600, contention=config.thread_contention)
    for row in table.itertuples():
        say(f"threads {row.threads} ({row.load}): {row.median_s:.3f} s/epoch, "
            f"{row.vs_best:.2f}x the best")
    return table


def check_targets(ratios: pd.DataFrame, throughput: pd.DataFrame) -> pd.DataFrame:
    """One row per target of the issue that this run measured: value, target, met."""
    rows = []
    for (section, a, b), (column, op, bound) in TARGETS.items():
        if section == "training":
            match = ratios[(ratios["loop"] == a) & (ratios["versus"] == b)]
            what = f"{a} / {b} (s/epoch)"
        else:
            match = throughput[(throughput["backend"] == a) & (throughput["workload"] == b)]
            what = f"{b}, {a}: fraction of roofline"
        if len(match):
            value = float(match[column].iloc[0])
            met = value <= bound if op == "<=" else value >= bound
            rows.append({"measure": what, "value": value, "target": f"{op} {bound:g}",
                         "met": bool(met)})
    return pd.DataFrame(rows, columns=["measure", "value", "target", "met"])


def write_bench(result: BenchResult, out: Path) -> list[Path]:
    """Write the tables (CSV), ``bench.json`` and ``report.md`` / ``report.html``."""
    from ppl_vae.bench.scaling import nonlinear_growth
    from ppl_vae.io import atomic_write_text, write_json
    from ppl_vae.reports import Report
    from ppl_vae.reports.figures import scaling_plot

    out.mkdir(parents=True, exist_ok=True)
    tables = {"training_times": result.training_times, "training": result.training,
              "ratios": result.ratios, "throughput": result.throughput,
              "threads": result.threads, "targets": result.targets}
    if result.scaling is not None:
        tables["scaling"] = result.scaling
    else:  # an earlier bench's scaling table (--overwrite) would read as this run's
        (out / "scaling.csv").unlink(missing_ok=True)
        (out / "figures" / "report-scaling.png").unlink(missing_ok=True)
    paths = []
    for name, table in tables.items():
        path = out / f"{name}.csv"
        atomic_write_text(path, table.to_csv(index=False))
        paths.append(path)
    config = dataclasses.asdict(result.config)
    write_json(out / "bench.json", {"config": config, "machine": result.machine,
                                    **{name: t.to_dict(orient="records")
                                       for name, t in tables.items()}})
    paths.append(out / "bench.json")
    report = Report("ppl-vae bench")
    m = result.machine
    report.text(f"{m['description']}; torch threads {m['torch_threads']}; devices "
                f"{m['device']}; load average {m['load_average_before']:.1f} before, "
                f"{m['load_average_after']:.1f} after. Ratios come from neighbouring "
                "(interleaved) measurements; absolute times depend on the machine's load.")
    report.heading("Targets").table(result.targets)
    report.heading("Training (s/epoch)").table(result.training).table(
        result.ratios, caption="median of per-round ratios (> 1: the first loop is slower)")
    report.heading("Throughput against the matmul roofline").table(result.throughput)
    if len(result.threads):
        report.heading("Threads (torch, hand-written loop)").table(result.threads)
    if result.scaling is not None:
        off = nonlinear_growth(result.scaling)
        report.heading("Scaling").text(
            "K and the dataset size should cost in proportion (per-epoch time grows with N); "
            + ("departing by more than 25% here: " + "; ".join(
                f"{r.backend} {r.factor} {r.value}: {r.relative_cost:.2f}x the cost for "
                f"{r.relative_size:g}x the size" for r in off.itertuples())
               if len(off) else "all within 25% of linear."))
        report.table(result.scaling).figure(
            scaling_plot(result.scaling), "scaling", "time against each factor, log-log; "
            "dotted: linear growth from the smallest setting")
    paths += list(report.write(out))
    return paths
