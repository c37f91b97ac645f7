"""The ``ppl-vae`` command line: one sub-command per module in :mod:`ppl_vae.commands`.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed arguments, returning an exit code). Heavy imports
(torch, jax) happen inside the commands, so ``ppl-vae --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ppl_vae import __version__, commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppl-vae", description="Variational autoencoders with Pyro and NumPyro.")
    parser.add_argument("--version", action="version", version=f"ppl_vae {__version__}")
    parser.add_argument("--threads", type=_threads, default="auto",
                        help="CPU threads for torch and XLA: a number, or auto (default: the "
                             "cores the rest of the machine leaves free; see ppl-vae bench)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):  # shared helpers of the commands, not commands
            continue
        importlib.import_module(f"ppl_vae.commands.{info.name}").register(sub)
    return parser


def _threads(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    from ppl_vae.threads import set_threads

    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
