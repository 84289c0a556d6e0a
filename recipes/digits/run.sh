#!/usr/bin/env bash
# Spoken digits (Free Spoken Digit Dataset, real 8 kHz speech): split, train, score.
#
#   recipes/digits/run.sh [FIRST [LAST]] [KEY=VALUE ...]   stages: prepare train evaluate
#                                   (default: from prepare to the end; LAST stops after it: `prepare prepare`)
#                                   KEY=VALUE: config overrides for the train stage
#
# CONFIG picks the experiment (digits.yaml: from scratch; digits-finetune.yaml: from the default model), EXP its
# folder, FSDD the dataset: its manifest or its recordings/ folder (default ../shared/data/fsdd/manifest.jsonl;
# README.md says where to get it), DATA the folder
# of the split manifests, PYTHON the Python that asr is installed in (default: python3 on the PATH).
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/lib.sh

stages=(prepare train evaluate)
FIRST=${1:-prepare}
shift $(( $# > 0 ? 1 : 0 ))
LAST=evaluate
if [ $# -gt 0 ] && [[ " ${stages[*]} " == *" $1 "* ]]; then LAST=$1; shift; fi
OVERRIDES=("$@")  # for the train stage
CONFIG=${CONFIG:-recipes/digits/digits.yaml}
EXP=${EXP:-exp/$(basename "$CONFIG" .yaml)}
FSDD=${FSDD:-../shared/data/fsdd/manifest.jsonl}
DATA=${DATA:-data/digits}
select_stages "$FIRST" "$LAST" "${stages[@]}"
if [ $# -gt 0 ] && [[ " ${todo[*]} " != *" train "* ]]; then
    echo "run.sh: $1: config overrides are for the train stage, which this run does not reach" >&2
    exit 2
fi
if [ "${todo[0]}" = prepare ] && [ ! -e "$FSDD" ]; then
    echo "run.sh: no FSDD dataset at $FSDD. This recipe needs the Free Spoken Digit Dataset (recipes/digits/README.md" \
         "says where to get it); set FSDD=/path/to/free-spoken-digit-dataset/recordings (its folder of" \
         "recordings) or FSDD=/path/to/manifest.jsonl" >&2
    exit 2
fi

score() {  # NAME DECODER-OPTION...: WER and exact utterances on test, the hypotheses in $EXP/test.NAME.jsonl
    local name=$1
    shift
    echo "# asr evaluate $*"
    "$PYTHON" -m asr evaluate --model "$EXP"/model.safetensors "$DATA"/test.jsonl "$@" --out "$EXP"/test.$name.jsonl
}

stage() {
    case $1 in
        prepare)  "$PYTHON" recipes/digits/prepare.py "$FSDD" "$DATA" ;;
        train)    "$PYTHON" -m asr train "$CONFIG" exp_dir="$EXP" data.train_manifests="[$DATA/train.jsonl]" \
                      data.val_manifests="[$DATA/dev.jsonl]" "${OVERRIDES[@]}" --resume ;;
        evaluate) # every utterance is one of the ten words: greedy, then closed-set recognition (each word scored
                  # by its CTC probability over all alignments, the likeliest taken)
                  printf '%s\n' zero one two three four five six seven eight nine > "$EXP"/digits.txt
                  { score greedy --decoder greedy; score choice --choices "$EXP"/digits.txt; } | tee "$EXP"/scores.txt ;;
    esac
}

run_stages
