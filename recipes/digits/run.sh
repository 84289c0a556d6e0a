#!/usr/bin/env bash
# Spoken digits (Free Spoken Digit Dataset, real 8 kHz speech): split, train, score.
#
#   recipes/digits/run.sh [STAGE]     stages: prepare train evaluate (default: prepare, all)
set -euo pipefail
cd "$(dirname "$0")/../.."

STAGE=${1:-prepare}
EXP=${EXP:-exp/digits}
FSDD=${FSDD:-../shared/data/fsdd/manifest.jsonl}
started=false
for stage in prepare train evaluate; do
    [ "$stage" = "$STAGE" ] && started=true
    $started || continue
    echo "== stage $stage" >&2
    case $stage in
        prepare)  python3 recipes/digits/prepare.py "$FSDD" data/digits ;;
        train)    python3 -m asr train recipes/digits/digits.yaml exp_dir=$EXP --resume ;;
        evaluate) python3 -m asr evaluate --model $EXP/model.safetensors data/digits/test.jsonl \
                      --out $EXP/hyps.jsonl | tee $EXP/scores.txt ;;
    esac
done
