#!/usr/bin/env bash
# The default model shipped with asr: synthetic speech and real read speech, mixed and augmented.
#
#   recipes/mixed/run.sh [START [STOP]]    stages: data lm curve train export tune evaluate install
#                                          (default: data to evaluate; START alone runs it and the stages after
#                                          it to evaluate; START STOP a range). install copies the model and LM
#                                          over asr/assets/default.*, so it runs only when named: run.sh install
#
# data:     the synthetic recipe's 32 h corpus (training engines; its dev/test are unseen speakers), an unseen-
#           engine corpus (RHVoice, never trained on), speechocean762's train/dev manifests and the curve's subsets.
# lm:       the 3-gram LM from the text corpora, every sentence read in a dev or test set left out.
# curve:    the learning curve: the same step budget (CURVE_STEPS) from the synthetic recipe's model, with each of
#           CURVE's amounts of real speech (0, 1, 2.5 and 4.5 h); each scored greedily on the dev sets.
# train:    the shipped model: a second leg of TRAIN_STEPS from the curve's 4.5 h model, on the same mix.
# export:   its best checkpoint (by dev WER) -> model-fp16.safetensors. tune: LM weights on the dev sets.
# evaluate: every set, greedy and with the LM. install: the model and LM into asr/assets.
#
# Data it needs (the defaults are the development machines' data folder beside the checkout; the variables point
# elsewhere; README.md says what each is and where to get it): TEXT_DIR (../shared/data/text: English sentences,
# one per line), SPEECHOCEAN (../shared/data/speechocean762: speechocean762's audio + a manifest.jsonl with
# speaker and split), REAL_DEV (../shared/data/real-dev/manifest.jsonl: real read speech), and the TTS engines of
# scripts/install_tts.sh. PYTHON: the Python asr is installed in.
# Run from anywhere; paths are relative to the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/lib.sh

export TEXT_DIR=${TEXT_DIR:-../shared/data/text}
SPEECHOCEAN=${SPEECHOCEAN:-../shared/data/speechocean762}
REAL_DEV=${REAL_DEV:-../shared/data/real-dev/manifest.jsonl}
CURVE=${CURVE:-0h 1h 2.5h 4.5h}
CURVE_STEPS=${CURVE_STEPS:-250}
TRAIN_STEPS=${TRAIN_STEPS:-900}
EXP=exp/mixed
mkdir -p "$EXP"  # the curve stage appends to $EXP/curve.txt, the lm stage writes here
START_MODEL=exp/synthetic-leg6/model-fp16.safetensors  # the synthetic recipe's last leg, shipped until 193c9db
MODEL=$EXP/model-fp16.safetensors
LM=$EXP/lm.bin
DEV=(data/speechocean762/dev.jsonl data/rhvoice/dev.jsonl data/synthetic/dev.jsonl)
TEST=(data/rhvoice/test.jsonl data/synthetic/test.jsonl "$REAL_DEV")

need() {  # FILE WHAT...: stop with what is missing and where it comes from
    [ -e "$1" ] || { echo "run.sh: $1 not found: ${*:2} (recipes/mixed/README.md)" >&2; exit 1; }
}

start_model() {  # the model it starts from: from its own run, else from the commit that shipped it
    model_from_git $START_MODEL 193c9db "run recipes/synthetic/run.sh (its legs 1-6)"
}

train() {  # EXP_DIR REAL_HOURS STEPS VALIDATE_EVERY [OVERRIDE...]: fine-tune on the synthetic corpus mixed with
           # REAL_HOURS of speechocean762, weighted to half of each epoch's audio
    local exp=$1 hours=$2 steps=$3 every=$4 manifests=data/synthetic/train.jsonl weights=0.15
    shift 4
    case $hours in
        0h)   ;;
        4.5h) manifests+=",data/speechocean762/train.jsonl"; weights+=",1" ;;
        *)    manifests+=",data/speechocean762/train-$hours.jsonl"; weights+=",$(awk "BEGIN {print 4.5 / ${hours%h}}")" ;;
    esac
    fine_tune recipes/mixed/mixed.yaml "$exp" "$steps" "$every" "$manifests" "$weights" "$@"
}

stage() {
    case $1 in
        data)     need "$TEXT_DIR" "the English sentences the TTS engines read and the LM learns (*.txt, one a line);" \
                      "set TEXT_DIR to such a folder"
                  need "$SPEECHOCEAN/manifest.jsonl" "the real speech to mix in: speechocean762 (OpenSLR SLR101), its" \
                      "audio with a manifest.jsonl that gives each line a speaker and a split (train or dev); set" \
                      "SPEECHOCEAN to the folder holding them"
                  need "$REAL_DEV" "a manifest of real read speech scored as a test set; set REAL_DEV to one"
                  DEV_SHARE=0.018 TEST_SHARE=0.018 HELD_OUT="$REAL_DEV" recipes/synthetic/make_corpus.sh 32 data/synthetic
                  if [ ! -f data/rhvoice/dev.jsonl ]; then  # an engine no corpus trains on: dev and test only
                      $PYTHON -m asr synth "$TEXT_DIR"/*.txt --out data/rhvoice --voices rhvoice --hours 0.6 --seed 7 \
                          --dev-share 0.49 --test-share 0.49 --exclude data/synthetic/{train,dev,test}.jsonl "$REAL_DEV"
                  fi
                  $PYTHON recipes/mixed/prepare_real.py "$SPEECHOCEAN" data/speechocean762 --hours 1 2.5 ;;
        lm)       build_lm $EXP $LM "${DEV[@]}" "${TEST[@]}" ;;
        curve)    start_model
                  for hours in $CURVE; do
                      train exp/mixed-curve-$hours "$hours" "$CURVE_STEPS" "$CURVE_STEPS" >&2
                      echo "# real speech $hours, $CURVE_STEPS steps"
                      $PYTHON -m asr evaluate --model exp/mixed-curve-$hours/model-fp16.safetensors "${DEV[@]}" \
                          --decoder greedy
                  done | tee -a $EXP/curve.txt ;;
        train)    need exp/mixed-curve-4.5h/model-fp16.safetensors "the curve's 4.5 h model: run the curve stage first"
                  train $EXP 4.5h "$TRAIN_STEPS" $((TRAIN_STEPS / 3)) init_from=exp/mixed-curve-4.5h/model-fp16.safetensors ;;
        export)   export_best $EXP ;;
        tune)     tune_lm $EXP $MODEL $LM "${DEV[@]}" ;;
        evaluate) evaluate_all $MODEL $LM $EXP/scores.txt "${DEV[@]}" "${TEST[@]}" ;;
        install)  install_model $MODEL $LM ;;
    esac
}

LAST=evaluate; [ "${1:-}" != install ] || LAST=install  # a plain run stops before install
select_stages "${1:-data}" "${2:-$LAST}" data lm curve train export tune evaluate install
run_stages
