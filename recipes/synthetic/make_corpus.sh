#!/usr/bin/env bash
# Stage 0 of the synthetic recipe: a synthetic corpus in LibriSpeech's layout, plus manifests.
#
#   recipes/synthetic/make_corpus.sh [HOURS] [OUT]        defaults: 10 hours into data/synthetic
#
# Environment: SEED (0), JOBS (all cores), VOICES (every training voice installed, e.g. "espeak-ng mbrola"),
# TEXT_DIR (../shared/data/text), DEV_SHARE and TEST_SHARE (0.05 of the hours each), HELD_OUT (manifests whose
# sentences are never read; default $REAL_DEV, else ../shared/data/real-dev/manifest.jsonl, which shares
# sentences with the text; HELD_OUT="" for none), PYTHON (the Python that asr is installed in; python3).
# Install the engines first with scripts/install_tts.sh; engines that are missing are skipped with a warning. A corpus already in OUT is kept: delete OUT to make a new one.
set -euo pipefail
cd "$(dirname "$0")/../.."

HOURS=${1:-10}
OUT=${2:-data/synthetic}
TEXT_DIR=${TEXT_DIR:-../shared/data/text}
PYTHON=${PYTHON:-python3}
read -r -a held_out <<< "${HELD_OUT-${REAL_DEV-../shared/data/real-dev/manifest.jsonl}}"

if [ -f "$OUT/train.jsonl" ]; then
    echo "$OUT already holds a corpus; delete it to make a new one" >&2
    exit 0
fi
if ! compgen -G "$TEXT_DIR/*.txt" >/dev/null; then
    echo "make_corpus.sh: no sentences in TEXT_DIR=$TEXT_DIR: the TTS engines read English sentences from its" \
         "*.txt files, one a line; set TEXT_DIR to such a folder (recipes/synthetic/README.md says how to make one)" >&2
    exit 2
fi
for manifest in "${held_out[@]}"; do
    if [ ! -f "$manifest" ]; then
        echo "make_corpus.sh: HELD_OUT names $manifest, which is not there (by default REAL_DEV's manifest of real" \
             "speech, whose sentences the corpus must not read); set HELD_OUT to the manifests whose sentences to" \
             "leave out, or HELD_OUT=\"\" for none" >&2
        exit 2
    fi
done
voices=()
if [ -n "${VOICES:-}" ]; then
    read -r -a voices <<< "$VOICES"
    voices=(--voices "${voices[@]}")
fi
"$PYTHON" -m asr synth "$TEXT_DIR"/*.txt --out "$OUT" --hours "$HOURS" --seed "${SEED:-0}" \
    --jobs "${JOBS:-$(nproc)}" --dev-share "${DEV_SHARE:-0.05}" --test-share "${TEST_SHARE:-0.05}" \
    ${held_out[@]:+--exclude "${held_out[@]}"} "${voices[@]}"
