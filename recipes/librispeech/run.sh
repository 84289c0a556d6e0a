#!/usr/bin/env bash
# LibriSpeech: download -> manifests -> SentencePiece -> n-gram LM -> train -> scores.
#
#   recipes/librispeech/run.sh [FIRST [LAST]]   stages: download prepare tokenizer lm train evaluate
#                                               (default: from download to the end; LAST stops after it)
#
# Every stage can be rerun: downloads resume and skip what is verified, `asr train --resume` continues the
# experiment in $EXP. Settings (environment):
#   SUBSETS   what to download and prepare (default: all seven subsets); TRAIN: the training subsets
#   CONFIG    ds2 (conf/ds2.yaml: 960 h) or recipes/librispeech/small-100h.yaml (with TRAIN=train-clean-100)
#   PYTHON    the Python that asr is installed in (default: python3 on the PATH)
#   LAUNCH    how to start training: $PYTHON (default), "torchrun --nproc-per-node 8 ...", "srun python3"
#   TRAIN_ARGS  extra config overrides for asr train, e.g. "trainer.devices=8 trainer.num_nodes=2"
#   MIRROR    base URL with 12/SUBSET.tar.gz and 11/librispeech-lm-norm.txt.gz (default: OpenSLR)
#   CHECKSUMS a `sha256sum` file for a mirror's own archives (default: the official sums)
#   LM_TEXT=0 skips the 1.4 GB LM text and the lm stage; LM_ORDER (3), VOCAB (256)
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/lib.sh

DATA=${DATA:-data/librispeech}                   # manifests, tokenizer, LM
CORPUS=${CORPUS:-$DATA/download}                 # archives and LibriSpeech/SUBSET/... under it
SUBSETS=${SUBSETS:-train-clean-100 train-clean-360 train-other-500 dev-clean dev-other test-clean test-other}
TRAIN=${TRAIN:-train-clean-100 train-clean-360 train-other-500}
CONFIG=${CONFIG:-ds2}
EXP=${EXP:-exp/librispeech-$(basename "$CONFIG" .yaml)}
LAUNCH=${LAUNCH:-$PYTHON}
LM_TEXT=${LM_TEXT:-1}
LM_ORDER=${LM_ORDER:-3}
VOCAB=${VOCAB:-256}
SP=$DATA/sp$VOCAB.model
LM=$DATA/lm-${LM_ORDER}gram.bin
SCORED=(dev-clean dev-other test-clean test-other)

manifests() { printf '%s\n' "$@" | sed "s|.*|$DATA/&.jsonl|" | paste -sd, -; }  # a b -> DATA/a.jsonl,DATA/b.jsonl

stage() {
    case $1 in
        download)  "$PYTHON" -m asr download librispeech "$CORPUS" --subsets $SUBSETS \
                       $([ "$LM_TEXT" = 1 ] && echo --lm-text) ${MIRROR:+--mirror "$MIRROR"} \
                       ${CHECKSUMS:+--checksums "$CHECKSUMS"} ;;
        prepare)   "$PYTHON" -m asr prepare librispeech "$CORPUS/LibriSpeech" "$DATA" ;;
        tokenizer) "$PYTHON" -m asr tokenizer $(manifests $TRAIN | tr , ' ') --out "$SP" --vocab-size "$VOCAB" ;;
        lm)        if [ "$LM_TEXT" = 1 ]; then
                       "$PYTHON" -m asr lm build "$CORPUS/librispeech-lm-norm.txt" --order "$LM_ORDER" --out "$LM"
                   fi ;;
        train)     $LAUNCH -m asr train "$CONFIG" exp_dir="$EXP" tokenizer.kind=sentencepiece tokenizer.model="$SP" \
                       data.train_manifests="[$(manifests $TRAIN)]" \
                       data.val_manifests="[$(manifests dev-clean dev-other)]" ${TRAIN_ARGS:-} --resume ;;
        evaluate)  decoders=("--decoder greedy")
                   if [ -f "$LM" ]; then
                       "$PYTHON" -m asr tune-lm --model "$EXP/model.safetensors" --manifest "$DATA/dev-clean.jsonl" \
                           --lm "$LM" --random 30
                       decoders+=("--lm $LM")
                   fi
                   for decoder in "${decoders[@]}"; do
                       echo "# asr evaluate $decoder"
                       "$PYTHON" -m asr evaluate --model "$EXP/model.safetensors" \
                           $(manifests "${SCORED[@]}" | tr , ' ') $decoder
                   done | tee "$EXP/scores.txt" ;;
    esac
}

select_stages "${1:-download}" "${2:-evaluate}" download prepare tokenizer lm train evaluate
run_stages
