"""``ppl-vae sample RUN_DIR``: PNG grids of a trained model's samples and reconstructions, and
for models with an encoder the latent views of the run report (``latents.csv``,
``traversals.png``, ``interpolations.png``).

A conditional VAE draws z ~ p(z | c) and shows E[x | z, c]: with ``--label K`` every sample is
of class K; without it the classes take turns, one class per grid column. Its reconstructions
use each image's own label; its latent views are not drawn (a code means something only
together with a label).

Images are drawn on the data's own range (8-bit likelihoods: 0..255), RGB images
(``data_shape`` ``(3, H, W)``) in colour; a local autoregressive decoder, which has no mean,
shows draws x ~ p(x | z) made pixel by pixel instead of means.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ppl_vae.commands._args import (
    UsageError,
    add_run_data_options,
    non_negative_int,
    positive_int,
    run_data,
    warn_if_unfinished,
)

RECONSTRUCTION_COLUMNS = 8


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample", help="draw samples and reconstructions of a trained run as PNG grids",
        description="Write samples.png (decoder means E[x | z] of z drawn from the prior) and "
                    "reconstructions.png (images of a split, each row of originals above its "
                    "reconstructions E[x | E_q[z | x]]) into the run directory; with an "
                    "encoder also latents.csv (codes of the split with labels), "
                    "traversals.png and interpolations.png. A conditional VAE samples "
                    "E[x | z, c] with z ~ p(z | c): of class --label, or one class per column.")
    parser.add_argument("run_dir", type=Path, help="a run directory written by ppl-vae train")
    parser.add_argument("--num-samples", type=positive_int, default=64,
                        help="images drawn from the model for samples.png (default: 64)")
    parser.add_argument("--num-reconstructions", type=non_negative_int, default=32,
                        help=f"a multiple of {RECONSTRUCTION_COLUMNS} (0: none)")
    parser.add_argument("--split", choices=("train", "valid", "test"), default=None,
                        help="images to reconstruct (default: test; encoder-free models: "
                             "train, the points with stored codes)")
    parser.add_argument("--num-codes", type=positive_int, default=500,
                        help="images of the split encoded for latents.csv (default: 500)")
    parser.add_argument("--label", type=non_negative_int, default=None,
                        help="conditional VAEs: draw every sample of this class (default: "
                             "the classes in turn, one per column)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--out", type=Path, help="folder for the PNGs (default: RUN_DIR)")
    add_run_data_options(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out folder that holds files ppl-vae did not write "
                             "(files of the same names are replaced)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ppl_vae.runs import OutputWriter

    if args.num_reconstructions % RECONSTRUCTION_COLUMNS:
        raise UsageError(f"--num-reconstructions must be a multiple of "
                         f"{RECONSTRUCTION_COLUMNS}, got {args.num_reconstructions}")
    with OutputWriter(args.out or args.run_dir, command="sample", runs=[args.run_dir],
                      overwrite=args.overwrite) as writer:
        return _sample(args, writer)


def _sample(args: argparse.Namespace, writer) -> int:
    import numpy as np

    from ppl_vae.reports.figures import (
        class_columns,
        display_range,
        interleave_rows,
        save_image_grid,
    )
    from ppl_vae.runs import RECONSTRUCTIONS_FILE, SAMPLES_FILE, load_run

    run_ = load_run(args.run_dir).with_data(**run_data(args))
    condition = run_.spec.condition
    if args.label is not None and condition is None:
        raise UsageError(f"--label applies to conditional VAEs; the model of {args.run_dir} "
                         "has no [condition] table in its spec: drop --label")
    if args.label is not None and args.label >= condition.classes:
        raise UsageError(f"--label {args.label} is out of range: the model has "
                         f"{condition.classes} classes, labels 0..{condition.classes - 1}")
    warn_if_unfinished(run_, args.prog)
    vae = run_.vae
    data = (run_.evaluation_data(args.split, max_points=args.num_reconstructions,
                                 seed=args.seed) if run_.has_data else None)
    image_shape = data.splits.image_shape if data is not None else None
    if image_shape is None and len(vae.spec.data_shape) >= 2:
        image_shape = vae.spec.data_shape
    grid = {"image_shape": image_shape,
            "value_range": display_range(vae.spec.likelihood.data_range)}
    num_samples, columns = class_columns(
        args.num_samples, condition.classes if condition is not None and args.label is None
        else None)
    if num_samples != args.num_samples:
        print(f"{args.prog}: {num_samples} samples, {num_samples // columns} per class "
              f"(one column per class)", file=sys.stderr)
    written = [save_image_grid(writer.path(SAMPLES_FILE),
                               np.asarray(vae.sample(num_samples, seed=args.seed, c=args.label)),
                               num_columns=columns, **grid)]
    if data is None:
        print(f"{args.prog}: run.json records no dataset, so no reconstructions",
              file=sys.stderr)
    elif args.num_reconstructions:
        if not (vae.spec.posterior.amortized or data.idx is not None):
            raise UsageError(f"this model has no encoder: the {data.split} split has no "
                             "stored codes to reconstruct from; use --split train")
        count = len(data.x) - len(data.x) % RECONSTRUCTION_COLUMNS
        if count == 0:
            raise UsageError(f"the {data.split} split has fewer than "
                             f"{RECONSTRUCTION_COLUMNS} images")
        x = data.x[:count]
        idx = None if data.idx is None else data.idx[:count]
        c = None if data.c is None else data.c[:count]
        recon = np.asarray(vae.decode_or_draw(vae.encode(x, idx, c), c, seed=args.seed))
        written.append(save_image_grid(
            writer.path(RECONSTRUCTIONS_FILE),
            interleave_rows(x, recon, RECONSTRUCTION_COLUMNS),
            num_columns=RECONSTRUCTION_COLUMNS, **grid))
    if condition is not None:
        print(f"{args.prog}: a conditional VAE's codes mean something only with a label, so "
              "no latent views (latents.csv, traversals, interpolations)", file=sys.stderr)
    elif data is not None and vae.spec.posterior.amortized:
        written += _latent_views(run_, vae, data, grid, args, writer)
    for path in written:
        print(path)
    return 0


def _latent_views(run_, vae, data, grid, args, writer) -> list[Path]:
    """latents.csv (codes, labels, 2-D view), traversals.png and interpolations.png
    (``grid``: the image shape and value range of :func:`save_image_grid`)."""
    from ppl_vae.evaluation.latent_views import interpolations, latent_codes, traversals
    from ppl_vae.io import atomic_write_text
    from ppl_vae.reports.figures import save_image_grid
    from ppl_vae.runs import INTERPOLATIONS_FILE, LATENTS_FILE, TRAVERSALS_FILE

    codes_data = run_.evaluation_data(data.split, max_points=args.num_codes, seed=args.seed)
    labels = getattr(codes_data.splits, f"{codes_data.split}_labels")
    codes = latent_codes(vae, codes_data.x, labels)
    atomic_write_text(writer.path(LATENTS_FILE), codes.to_csv(index=False))
    steps = 9
    return [writer.path(LATENTS_FILE),
            save_image_grid(writer.path(TRAVERSALS_FILE),
                            traversals(vae, codes, num_steps=steps, seed=args.seed),
                            num_columns=steps, **grid),
            save_image_grid(writer.path(INTERPOLATIONS_FILE),
                            interpolations(vae, codes, num_steps=steps, seed=args.seed),
                            num_columns=steps, **grid)]
