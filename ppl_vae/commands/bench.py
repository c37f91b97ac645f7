"""``ppl-vae bench``: speed of the package on this machine, against hand-written loops and the
matmul roofline (see :mod:`ppl_vae.bench`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ppl_vae.commands._args import positive_int
from ppl_vae.models import BACKENDS

DEVICES = ("auto", "cpu", "cuda")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="time fit and evaluation against hand-written loops and the roofline",
        description="Time ppl_vae.fit on Pyro and NumPyro against hand-written PyTorch and "
                    "JAX/optax loops of the same model (interleaved epoch by epoch), "
                    "importance sampling and gradient draws against the measured matmul "
                    "rate, the thread count, and the scaling with batch size, latent size, "
                    "dataset size and K. Writes CSV tables, bench.json and report.md/.html.")
    parser.add_argument("--backend", choices=BACKENDS, action="append", dest="backends",
                        help="only this backend (repeat for both; default both)")
    parser.add_argument("--device", choices=DEVICES,
                        help="cpu (default), cuda, or auto (CUDA / JAX GPU when present)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: checks the harness in seconds (figures meaningless)")
    parser.add_argument("--epochs", type=positive_int, help="timed epochs (default 12)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling table")
    parser.add_argument("--bench-threads", type=positive_int, default=1,
                        help="threads for the timed sections (default 1, so that ratios are "
                             "not skewed by thread contention)")
    parser.add_argument("--out", type=Path, default=Path("bench"),
                        help="output folder (default ./bench)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the earlier bench in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ppl_vae.bench import BenchConfig, run_bench, write_bench

    overrides = {"backends": tuple(dict.fromkeys(args.backends or BACKENDS)),
                 "device": args.device, "threads": args.bench_threads}
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.no_scaling:
        overrides["scaling"] = None
    config = BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)
    if args.out.exists() and any(args.out.iterdir()):
        if not (args.out / "bench.json").exists():
            print(f"ppl-vae bench: error: {args.out} holds other files; choose an empty or "
                  "new folder with --out", file=sys.stderr)
            return 2
        if not args.overwrite:
            print(f"ppl-vae bench: error: {args.out} holds an earlier bench; pass --overwrite "
                  "to replace it, or choose another --out", file=sys.stderr)
            return 2
    try:
        result = run_bench(config, progress=None if args.quiet else print)
    except RuntimeError as err:  # e.g. --device cuda without a GPU
        print(f"ppl-vae bench: error: {err}", file=sys.stderr)
        return 2
    paths = write_bench(result, args.out)
    print(result.ratios.to_string(index=False, float_format="%.3f"))
    print(result.throughput[["backend", "workload", "per_second", "unit",
                             "fraction_of_roofline"]].to_string(index=False,
                                                                float_format="%.3g"))
    print(result.targets.to_string(index=False, float_format="%.3f"))
    print(f"wrote {len(paths)} files to {args.out}")
    return 0
