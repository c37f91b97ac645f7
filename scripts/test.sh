#!/usr/bin/env bash
# The project's test command: set up (idempotent), lint, then the default test suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m slow` for the long tests.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${PPL_VAE_VENV:-.venv}"
bash scripts/setup.sh
"$venv/bin/ruff" check .
# One thread per library per pytest worker: two workers share the 2 cores without oversubscribing.
export JAX_PLATFORMS=cpu MPLBACKEND=Agg OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
"$venv/bin/python" -m pytest -n 2 --dist loadfile "$@"
