#!/usr/bin/env bash
# Stage 0 of the synthetic recipe: a synthetic corpus in LibriSpeech's layout, plus manifests.
#
#   recipes/synthetic/make_corpus.sh [HOURS] [OUT]        defaults: 10 hours into data/synthetic
#
# Environment: SEED (0), JOBS (all cores), VOICES (every training voice installed, e.g. "espeak-ng mbrola"),
# TEXT_DIR (../shared/data/text), DEV_SHARE and TEST_SHARE (0.05 of the hours each), HELD_OUT (manifests whose
# sentences are never read; default ../shared/data/real-dev/manifest.jsonl, which shares sentences with the
# text; HELD_OUT="" for none). Install the engines first with scripts/install_tts.sh; engines that
# are missing are skipped with a warning. A corpus already in OUT is kept: delete OUT to make a new one.
set -euo pipefail
cd "$(dirname "$0")/../.."

HOURS=${1:-10}
OUT=${2:-data/synthetic}
TEXT_DIR=${TEXT_DIR:-../shared/data/text}
read -r -a held_out <<< "${HELD_OUT-../shared/data/real-dev/manifest.jsonl}"

if [ -f "$OUT/train.jsonl" ]; then
    echo "$OUT already holds a corpus; delete it to make a new one" >&2
    exit 0
fi
voices=()
if [ -n "${VOICES:-}" ]; then
    read -r -a voices <<< "$VOICES"
    voices=(--voices "${voices[@]}")
fi
python3 -m asr synth "$TEXT_DIR"/*.txt --out "$OUT" --hours "$HOURS" --seed "${SEED:-0}" \
    --jobs "${JOBS:-$(nproc)}" --dev-share "${DEV_SHARE:-0.05}" --test-share "${TEST_SHARE:-0.05}" \
    ${held_out[@]:+--exclude "${held_out[@]}"} "${voices[@]}"
