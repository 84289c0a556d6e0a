#!/usr/bin/env bash
# Builds KenLM's `lmplz` (modified Kneser-Ney estimation, for large corpora) and `build_binary` (binary
# LMs that load in milliseconds) from the source of the PyPI `kenlm` package, and installs them in
# PREFIX/bin. PREFIX defaults to the active Python environment's, next to the `asr` command, where
# `asr lm build` finds them. Needs cmake, a C++ compiler and Debian's Boost packages (installed if
# missing). About a minute on 2 cores; does nothing if they are there.
#   bash scripts/build_kenlm.sh [PREFIX]
set -euo pipefail
PYTHON=${PYTHON:-python3}  # the Python whose environment gets the tools (default: the first python3 on the PATH)
PREFIX="${1:-$("$PYTHON" -c 'import sys; print(sys.prefix)')}"
KENLM_VERSION="0.3.0"
if [ -x "$PREFIX/bin/lmplz" ] && [ -x "$PREFIX/bin/build_binary" ]; then
    echo "KenLM's lmplz and build_binary are already in $PREFIX/bin"
    exit 0
fi

SYSTEM_PACKAGES=(cmake g++ make zlib1g-dev libbz2-dev liblzma-dev
                 libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev)
if ! dpkg -s "${SYSTEM_PACKAGES[@]}" >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    APT=(apt-get -o DPkg::Lock::Timeout=600)  # wait for another apt-get (up to 10 min) instead of failing
    $sudo "${APT[@]}" update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -qq --no-install-recommends "${SYSTEM_PACKAGES[@]}"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation -d "$work" "kenlm==$KENLM_VERSION"
tar -xzf "$work"/kenlm-*.tar.gz -C "$work"
if ! { cmake -S "$work/kenlm-$KENLM_VERSION" -B "$work/build" -DCMAKE_BUILD_TYPE=Release &&
       cmake --build "$work/build" --target lmplz build_binary -j "$(nproc)"; } >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    echo "building KenLM failed; the log's end is above" >&2
    exit 1
fi
mkdir -p "$PREFIX/bin"
install -m 755 "$work/build/bin/lmplz" "$work/build/bin/build_binary" "$PREFIX/bin/"
echo "installed $PREFIX/bin/lmplz and $PREFIX/bin/build_binary"
