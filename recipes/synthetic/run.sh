#!/usr/bin/env bash
# The model asr shipped until 6 Dec 2026, end to end: corpora -> six training legs -> bundle -> LM -> scores.
# The default model shipped now is recipes/mixed's (it starts from this recipe's leg 6).
#
#   recipes/synthetic/run.sh [FIRST [LAST]]   stages: corpus train continue export lm tune evaluate install
#                                             (default: from corpus through evaluate; LAST stops after it)
# install copies leg 6 and its LM over asr/assets/default.*, replacing the shipped model, so it runs only when
# named: `recipes/synthetic/run.sh install`.
#
# Leg 1 (train) learns from scratch on an 11.5 h corpus (~10.3 h of training speech). Legs 2 to 4 (continue)
# train on a 32 h corpus (~30.8 h), whose dev and test splits every score is taken on: leg 2 from leg 1's
# weights, leg 3 from leg 2's best, leg 4 (no SpecAugment, no dropout) from leg 3's. Legs 5 and 6, also without
# regularisation, each train one epoch from the leg before's best on a fresh corpus of sentences no other corpus
# has: 48 h (~46.3 h of training speech), then 30 h. Each leg runs a learning-rate cycle of its own. All corpora
# come from seed 0 and the same shares where it matters, so they deal the speakers into the splits alike;
# check_disjoint.py checks that no corpus trained on shares a sentence or speaker with the 32 h corpus's dev and test.
# Run from anywhere; paths are relative to the repository root. Data from outside the checkout (the defaults are
# the development machines' data folder beside it; README.md says what the data is and how to make or get it):
#   TEXT_DIR  English sentences, *.txt, one a line (default ../shared/data/text), for the corpus and lm stages
#   REAL_DEV  a manifest of real read speech, held out of the corpora and the LM text and scored beside the
#             synthetic dev and test sets (default ../shared/data/real-dev/manifest.jsonl; REAL_DEV="" for none)
#   PYTHON    the Python that asr is installed in (default: python3 on the PATH)
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/lib.sh

export TEXT_DIR=${TEXT_DIR:-../shared/data/text}  # the sentences, for every stage and make_corpus.sh
export REAL_DEV=${REAL_DEV-../shared/data/real-dev/manifest.jsonl}
LEG1=exp/synthetic
LEG2=exp/synthetic-continue
LEG3=exp/synthetic-leg3
LEG4=exp/synthetic-leg4
LEG5=exp/synthetic-leg5
EXP=exp/synthetic-leg6
MODEL=$EXP/model-fp16.safetensors
LM=$EXP/lm.bin
SPLITS=(data/synthetic/dev.jsonl data/synthetic/test.jsonl ${REAL_DEV:+"$REAL_DEV"})
NO_REGULARISATION=(model.dropout=0 model.frontend.freq_masks=0 model.frontend.time_masks=0)  # legs 4 to 6

check_data() {  # STAGE: stop before any stage runs if the data STAGE reads from outside the checkout is missing
    if [[ " corpus lm " == *" $1 "* ]] && ! compgen -G "$TEXT_DIR/*.txt" >/dev/null; then
        echo "run.sh: the $1 stage reads English sentences (the text the TTS engines read aloud and the LM learns)" \
             "from TEXT_DIR=$TEXT_DIR, which holds no *.txt; set TEXT_DIR to a folder of *.txt files, one sentence a" \
             "line (any English text; recipes/synthetic/README.md says how to make one)" >&2
        exit 2
    fi
    if [[ " corpus lm evaluate " == *" $1 "* ]] && [ -n "$REAL_DEV" ] && [ ! -f "$REAL_DEV" ]; then
        echo "run.sh: the $1 stage reads REAL_DEV=$REAL_DEV, a manifest of real read speech scored beside the" \
             "synthetic sets, which is not there; set REAL_DEV to a manifest of your own recordings, or" \
             "REAL_DEV=\"\" to go without (recipes/synthetic/README.md)" >&2
        exit 2
    fi
}

stage() {
    case $1 in
        corpus)   HELD_OUT="" recipes/synthetic/make_corpus.sh 11.5 data/synthetic-11h
                  DEV_SHARE=0.018 TEST_SHARE=0.018 recipes/synthetic/make_corpus.sh 32 data/synthetic
                  HELD_OUT="data/synthetic/train.jsonl ${SPLITS[*]}" DEV_SHARE=0.018 TEST_SHARE=0.018 \
                      recipes/synthetic/make_corpus.sh 48 data/synthetic-fresh
                  HELD_OUT="data/synthetic/train.jsonl data/synthetic-fresh/train.jsonl data/synthetic-fresh/dev.jsonl \
                      data/synthetic-fresh/test.jsonl ${SPLITS[*]}" DEV_SHARE=0.018 TEST_SHARE=0.018 \
                      recipes/synthetic/make_corpus.sh 30 data/synthetic-fresh2
                  for corpus in data/synthetic-11h data/synthetic-fresh data/synthetic-fresh2; do
                      "$PYTHON" recipes/synthetic/check_disjoint.py $corpus data/synthetic
                  done ;;
        train)    "$PYTHON" -m asr train recipes/synthetic/synthetic.yaml exp_dir=$LEG1 --resume
                  export_best $LEG1 ;;
        continue) "$PYTHON" -m asr train recipes/synthetic/synthetic-continue.yaml exp_dir=$LEG2 --resume
                  export_best $LEG2
                  "$PYTHON" -m asr train recipes/synthetic/synthetic-continue.yaml exp_dir=$LEG3 \
                      init_from=$LEG2/model-fp16.safetensors trainer.max_epochs=2 --resume
                  export_best $LEG3
                  "$PYTHON" -m asr train recipes/synthetic/synthetic-continue.yaml exp_dir=$LEG4 \
                      init_from=$LEG3/model-fp16.safetensors trainer.max_epochs=2 "${NO_REGULARISATION[@]}" --resume
                  export_best $LEG4
                  "$PYTHON" -m asr train recipes/synthetic/synthetic-continue.yaml exp_dir=$LEG5 \
                      init_from=$LEG4/model-fp16.safetensors trainer.max_epochs=1 "${NO_REGULARISATION[@]}" \
                      "data.train_manifests=[data/synthetic-fresh/train.jsonl]" --resume
                  export_best $LEG5
                  "$PYTHON" -m asr train recipes/synthetic/synthetic-continue.yaml exp_dir=$EXP \
                      init_from=$LEG5/model-fp16.safetensors trainer.max_epochs=1 "${NO_REGULARISATION[@]}" \
                      "data.train_manifests=[data/synthetic-fresh2/train.jsonl]" --resume ;;
        export)   export_best $EXP ;;
        lm)       # every sentence of the text corpora except those read in the scored sets
                  "$PYTHON" recipes/synthetic/lm_text.py "$TEXT_DIR"/*.txt --exclude "${SPLITS[@]}" \
                      --out $EXP/lm-text.txt
                  "$PYTHON" -m asr lm build $EXP/lm-text.txt --order 3 --out $LM ;;
        tune)     "$PYTHON" -m asr tune-lm --model $MODEL --manifest data/synthetic/dev.jsonl --lm $LM ;;
        evaluate) for decoder in "--decoder greedy" "--decoder beam" "--lm $LM"; do
                      echo "# asr evaluate $decoder"
                      "$PYTHON" -m asr evaluate --model $MODEL "${SPLITS[@]}" $decoder
                  done | tee $EXP/scores.txt ;;
        install)  install_model $MODEL $LM ;;
    esac
}

LAST=evaluate; [ "${1:-}" != install ] || LAST=install  # a plain run stops before install
select_stages "${1:-corpus}" "${2:-$LAST}" corpus train continue export lm tune evaluate install
for name in "${todo[@]}"; do check_data "$name"; done
run_stages
