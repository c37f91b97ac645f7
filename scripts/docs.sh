#!/usr/bin/env bash
# Build the documentation site strictly: install the docs extra, run the examples at a small
# budget into docs/generated/ (their real output and figures, and the spec-format tables),
# then `mkdocs build --strict` into site/ (any warning or broken link fails). Nothing is
# downloaded by the build itself; MathJax loads in the reader's browser.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${PPL_VAE_VENV:-.venv}"
if [[ ! -x $venv/bin/mkdocs ]]; then
    # The same torch pin as scripts/setup.sh, so pip keeps the local CPU build.
    "$venv/bin/python" -m pip install -q "torch==2.13.0" -e ".[docs]"
fi
export JAX_PLATFORMS=cpu MPLBACKEND=Agg OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NO_MKDOCS_2_WARNING=1
start=$SECONDS
"$venv/bin/python" docs/build_examples.py
"$venv/bin/mkdocs" build --strict
echo "docs built in $(( SECONDS - start )) s: site/index.html"
