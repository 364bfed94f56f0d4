#!/usr/bin/env bash
# install_deps.sh: everything the project needs on a bare Debian 12 machine, from Debian's
# packages and npm only: the C++ toolchain, OpenBLAS, Open MPI (USE_MPI=1), PyTorch (CPU) with
# numpy and matplotlib for /usr/bin/python3, Node.js for the GPT-2 tokenizer, and the pinned
# js-tiktoken; clang with its sanitizer and libFuzzer runtimes (libclang-rt-14-dev) for `make fuzz`
# and `make test-sanitize`, and GNU time (peak memory in tests/test_reliability.sh).
# Needs root (or sudo). Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PACKAGES=(build-essential make python3 python3-torch python3-numpy python3-matplotlib
          libopenblas0-pthread libopenblas-dev libopenmpi-dev openmpi-bin clang libclang-rt-14-dev time)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from elsewhere (e.g. NodeSource's nodejs, which bundles npm): ask for the
# commands, not the packages.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ -f dev/data/package-lock.json ] && [ ! -d dev/data/node_modules/js-tiktoken ]; then
    (cd dev/data && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "dependencies ready"
