#!/usr/bin/env bash
# Create .venv (or $PPL_VAE_VENV) with ppl_vae, its test tools, Ray (the compare grid's
# distributed executor; the test suite runs a tiny grid through a local Ray head) and the docs
# tools (scripts/docs.sh).
# torch is pinned to 2.13.0 IN THE SAME pip command: on these machines that is the local CPU
# build; an unpinned torch would pull a newer release with GBs of CUDA packages. On a GPU
# machine, install your own CUDA build of torch first and drop the pin.
# As root and without chromium, also installs Debian's chromium (the report pages' browser
# test); elsewhere that test is skipped with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${PPL_VAE_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "torch==2.13.0" -e ".[test,ray,docs]"
if ! command -v chromium >/dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
