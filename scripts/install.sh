#!/usr/bin/env bash
# Installs asr into the current Python environment, with its test extras, and the system packages it
# uses: espeak-ng (speech for the tests and the synthetic corpus) and sox, and builds KenLM's tools.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(espeak-ng sox)
APT=(apt-get -o DPkg::Lock::Timeout=600)  # wait for another apt-get (up to 10 min) instead of failing
PYTHON=${PYTHON:-python3}  # the Python to install into (default: the first python3 on the PATH)
if ! dpkg -s "${SYSTEM_PACKAGES[@]}" >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo "${APT[@]}" update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -qq --no-install-recommends "${SYSTEM_PACKAGES[@]}"
fi

"$PYTHON" -m pip install -e ".[dev]"

# KenLM's lmplz (modified Kneser-Ney LMs from large text) and build_binary (binary LMs): `asr lm build`
PYTHON="$PYTHON" bash scripts/build_kenlm.sh
