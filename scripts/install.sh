#!/usr/bin/env bash
# Installs asr into the current Python environment, with its test extras, and the system packages it
# uses: espeak-ng (speech for the tests and the synthetic corpus) and sox, and builds KenLM's tools.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(espeak-ng sox)
if ! dpkg -s "${SYSTEM_PACKAGES[@]}" >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${SYSTEM_PACKAGES[@]}"
fi

python3 -m pip install -e ".[dev]"

# KenLM's lmplz (modified Kneser-Ney LMs from large text) and build_binary (binary LMs): `asr lm build`
bash scripts/build_kenlm.sh
