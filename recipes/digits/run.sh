#!/usr/bin/env bash
# Spoken digits (Free Spoken Digit Dataset, real 8 kHz speech): split, train, score.
#
#   recipes/digits/run.sh [STAGE [KEY=VALUE ...]]   stages: prepare train evaluate (default: prepare, all)
#                                                  KEY=VALUE: config overrides for the train stage
#
# CONFIG picks the experiment (digits.yaml: from scratch; digits-finetune.yaml: from the default model), EXP its
# folder, FSDD the dataset's manifest, DATA the folder of the split manifests.
set -euo pipefail
cd "$(dirname "$0")/../.."

STAGE=${1:-prepare}
shift $(( $# > 0 ? 1 : 0 ))
CONFIG=${CONFIG:-recipes/digits/digits.yaml}
EXP=${EXP:-exp/$(basename "$CONFIG" .yaml)}
FSDD=${FSDD:-../shared/data/fsdd/manifest.jsonl}
DATA=${DATA:-data/digits}
if [ $# -gt 0 ] && [ "$STAGE" = evaluate ]; then
    echo "run.sh: $1: config overrides are for the train stage; evaluate takes none" >&2
    exit 2
fi

score() {  # NAME DECODER-OPTION...: WER and exact utterances on test, the hypotheses in $EXP/test.NAME.jsonl
    local name=$1
    shift
    echo "# asr evaluate $*"
    python3 -m asr evaluate --model "$EXP"/model.safetensors "$DATA"/test.jsonl "$@" --out "$EXP"/test.$name.jsonl
}

started=false
for stage in prepare train evaluate; do
    [ "$stage" = "$STAGE" ] && started=true
    $started || continue
    echo "== stage $stage" >&2
    case $stage in
        prepare)  python3 recipes/digits/prepare.py "$FSDD" "$DATA" ;;
        train)    python3 -m asr train "$CONFIG" exp_dir="$EXP" data.train_manifests="[$DATA/train.jsonl]" \
                      data.val_manifests="[$DATA/dev.jsonl]" "$@" --resume ;;
        evaluate) # every utterance is one of the ten words: greedy, then closed-set recognition (each word scored
                  # by its CTC probability over all alignments, the likeliest taken)
                  printf '%s\n' zero one two three four five six seven eight nine > "$EXP"/digits.txt
                  { score greedy --decoder greedy; score choice --choices "$EXP"/digits.txt; } | tee "$EXP"/scores.txt ;;
    esac
done
