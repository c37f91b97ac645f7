"""``ppl-vae zoo``: the models shipped in ``models/``, one line each with their families."""

from __future__ import annotations

import argparse

COLUMNS = ("model", "posterior", "prior", "likelihood", "decoder", "description")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "zoo", help="list the zoo's models with their families",
        description="One line per model of the zoo (models/*.toml; any of them is a SPEC of "
                    "train, compare and variance): its posterior, prior and likelihood "
                    "families, its decoder (mlp, conv, or conv+masked: locally "
                    "autoregressive), whether it is conditioned on a label, and its "
                    "description.")
    parser.set_defaults(func=run)


def zoo_rows() -> list[tuple[str, ...]]:
    """One row of :data:`COLUMNS` per zoo model, sorted by name."""
    from ppl_vae.models import load_spec, zoo_names

    rows = []
    for name in zoo_names():
        spec = load_spec(name)
        decoder = spec.decoder.kind + ("+masked" if spec.decoder.masked_layers else "")
        prior = spec.prior.name + (" | label" if spec.condition is not None else "")
        rows.append((name, spec.posterior.name, prior, spec.likelihood.name, decoder,
                     spec.description))
    return rows


def run(args: argparse.Namespace) -> int:
    rows = [COLUMNS, *zoo_rows()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
              + "  " + row[-1])
    return 0
