#!/usr/bin/env bash
# The main job: train the standard Gaussian VAE (models/gaussian_gaussian.toml, the spec's
# [training] defaults) on MNIST-5k, evaluate it on the test split, and draw samples and
# reconstructions, then render report.html. Everything lands in one run directory (default
# runs/gaussian_gaussian).
#
#   scripts/setup.sh            # once: creates .venv (or $PPL_VAE_VENV)
#   scripts/main_job.sh [RUN_DIR] [more `ppl-vae train` options, e.g. --backend numpyro]
#
# Run it again to continue an interrupted run from its last checkpoint (--resume); delete
# RUN_DIR to start over.
set -euo pipefail
cd "$(dirname "$0")/.."

PPL_VAE="${PPL_VAE_VENV:-.venv}/bin/ppl-vae"
if [[ ! -x $PPL_VAE ]]; then
    echo "main_job.sh: $PPL_VAE not found; run scripts/setup.sh first" >&2
    exit 1
fi
RUN_DIR=${1:-runs/gaussian_gaussian}
shift $(( $# > 0 ? 1 : 0 ))

RESUME=()
if [[ -f $RUN_DIR/run.json ]]; then
    RESUME=(--resume)
fi

start=$SECONDS
"$PPL_VAE" train models/gaussian_gaussian.toml --dataset mnist5k --out "$RUN_DIR" \
    "${RESUME[@]}" "$@"
trained=$SECONDS
# importance-sampled log p(x) with 1000 particles per test image (IWAE protocol)
"$PPL_VAE" evaluate "$RUN_DIR" --split test --num-samples 1000
evaluated=$SECONDS
"$PPL_VAE" sample "$RUN_DIR"
"$PPL_VAE" report "$RUN_DIR"

echo "main job done in $(( SECONDS - start )) s (training $(( trained - start )) s," \
     "evaluation $(( evaluated - trained )) s): $RUN_DIR"
