#!/usr/bin/env bash
# Installs asr, with its test extras, into a virtual environment, and the system packages it uses: espeak-ng
# (speech for the tests and the synthetic corpus), sox and PortAudio (asr transcribe --live), and builds KenLM's
# tools. Safe to run again.
#   bash scripts/install.sh && source .venv/bin/activate
# The environment: the Python that PYTHON names, else the active venv (VIRTUAL_ENV), else the checkout's .venv,
# made with `python3 -m venv` if missing (and Debian's python3-venv with it). A Python whose packages the system
# manages (PEP 668: Debian's and Ubuntu's /usr/bin/python3) is refused, with the command to run instead.
#   bash scripts/install.sh --print-python   # print that Python and stop, changing nothing
set -euo pipefail
cd "$(dirname "$0")/.."

VENV_PYTHON="$PWD/.venv/bin/python"

# The Python to install into: PYTHON, else the active venv's, else .venv's (which may not exist yet)
chosen_python() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"
    elif [ -n "${VIRTUAL_ENV:-}" ]; then echo "$VIRTUAL_ENV/bin/python"
    else echo "$VENV_PYTHON"
    fi
}

# Fails with the command to run instead when the system manages $1's packages (pip would stop with
# externally-managed-environment); a Python that does not exist yet (.venv before it is made) passes
refuse_externally_managed() {
    [ -x "$1" ] || command -v "$1" >/dev/null || return 0
    if "$1" -c 'import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")  # where pip looks, outside a venv
sys.exit(sys.prefix == sys.base_prefix and os.path.exists(marker))'
    then return 0; fi
    echo "install.sh: error: $1 is managed by the system (PEP 668), so pip cannot install into it;" \
         "run \`bash scripts/install.sh\` without PYTHON to install into .venv" >&2
    exit 2
}

PYTHON=$(chosen_python)
refuse_externally_managed "$PYTHON"
if [ "${1:-}" = "--print-python" ]; then echo "$PYTHON"; exit 0; fi

SYSTEM_PACKAGES=(espeak-ng sox libportaudio2)
make_venv=""
if [ "$PYTHON" = "$VENV_PYTHON" ] && [ ! -x "$VENV_PYTHON" ]; then
    make_venv=1
    SYSTEM_PACKAGES+=(python3-venv)  # Debian's python3 makes venvs only with it
fi
APT=(apt-get -o DPkg::Lock::Timeout=600)  # wait for another apt-get (up to 10 min) instead of failing
if ! dpkg -s "${SYSTEM_PACKAGES[@]}" >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo "${APT[@]}" update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -qq --no-install-recommends "${SYSTEM_PACKAGES[@]}"
fi
[ -z "$make_venv" ] || python3 -m venv .venv

"$PYTHON" -m pip install -e ".[dev]"

# KenLM's lmplz (modified Kneser-Ney LMs from large text) and build_binary (binary LMs): `asr lm build`
PYTHON="$PYTHON" bash scripts/build_kenlm.sh

if [ "$PYTHON" = "$VENV_PYTHON" ] && [ "${VIRTUAL_ENV:-}" != "$PWD/.venv" ]; then
    echo "asr is installed in .venv; activate it with: source .venv/bin/activate"
else
    echo "asr is installed for $PYTHON: $(dirname "$PYTHON")/asr"
fi
