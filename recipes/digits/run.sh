#!/usr/bin/env bash
# Spoken digits (Free Spoken Digit Dataset, real 8 kHz speech): split, train, score.
#
#   recipes/digits/run.sh [STAGE]     stages: prepare train evaluate (default: prepare, all)
#
# CONFIG picks the experiment (digits.yaml: from scratch; digits-finetune.yaml: from the default model), EXP its folder.
set -euo pipefail
cd "$(dirname "$0")/../.."

STAGE=${1:-prepare}
CONFIG=${CONFIG:-recipes/digits/digits.yaml}
EXP=${EXP:-exp/$(basename "$CONFIG" .yaml)}
FSDD=${FSDD:-../shared/data/fsdd/manifest.jsonl}
started=false
for stage in prepare train evaluate; do
    [ "$stage" = "$STAGE" ] && started=true
    $started || continue
    echo "== stage $stage" >&2
    case $stage in
        prepare)  python3 recipes/digits/prepare.py "$FSDD" data/digits ;;
        train)    python3 -m asr train "$CONFIG" exp_dir="$EXP" --resume ;;
        evaluate) # every utterance is one of the ten words: greedy, then closed-set recognition (each word scored
                  # by its CTC probability over all alignments, the likeliest taken)
                  printf '%s\n' zero one two three four five six seven eight nine > $EXP/digits.txt
                  for decoder in "--decoder greedy" "--choices $EXP/digits.txt"; do
                      echo "# asr evaluate $decoder"
                      python3 -m asr evaluate --model $EXP/model.safetensors data/digits/test.jsonl $decoder
                  done | tee $EXP/scores.txt ;;
    esac
done
