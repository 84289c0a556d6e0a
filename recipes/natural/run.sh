#!/usr/bin/env bash
# Natural voices: the default model shipped with asr, fine-tuned on neural multi-speaker TTS (Kokoro) and a native
# speaker's real recordings (Cathy), mixed with the mixed recipe's robotic engines and speechocean762.
#
#   recipes/natural/run.sh [START [STOP]]    stages: corpus data lm curve train continue more leg4 leg5 deep deep2 deep3
#                                            deep4 export fit tune evaluate install stream stream-more stream-tune
#                                            stream-evaluate stream-install
#                                            (default: corpus to evaluate; START alone runs it and the stages after
#                                            it to evaluate; START STOP a range). install copies the model and LM
#                                            over asr/assets/default.*, so it runs only when named: run.sh install
#
# corpus:   `asr synth --voices kokoro`: KOKORO_HOURS of Kokoro speech (hundreds of speakers, the dev voices never)
#           in data/kokoro, on JOBS processes of one thread. It appends to what is there, so a run that stops, or a
#           later one with more hours, goes on where the last ended; the later stages train on whatever it holds.
#           Made in the background beside other work: nice -n 19 recipes/natural/run.sh corpus corpus &
# data:     the mixed recipe's data (robotic 32 h corpus, RHVoice dev/test, speechocean762), then prepare.py: the
#           Kokoro train manifests (the shared corpus's train rows + data/kokoro, every dev/test sentence dropped),
#           the curve's subsets of them, Cathy, and the dev sets (Kokoro's unseen voices, real-dev).
# lm:       the 3-gram LM from the text corpora, every sentence read in a dev or test set left out.
# curve:    the learning curve: CURVE_STEPS from the mixed recipe's model with each of CURVE's Kokoro amounts (0 h
#           and the subsets; "all" is everything the corpus holds), Kokoro 5 h of each epoch whatever its hours;
#           each scored greedily on the dev sets.
# train:    leg 1 of the shipped model: TRAIN_STEPS more from the curve's "all" point, on the same mix.
# continue: leg 2: CONTINUE_STEPS more from leg 1, a learning-rate cycle of its own (CONTINUE_STEPS=0: none).
# more:     leg 3: MORE_STEPS more from leg 2 (from the commit that shipped it, when not trained here) on the Kokoro
#           corpus as it then stands (run the data stage again first), a cycle of its own (MORE_STEPS=0: none).
# leg4:     leg 4: LEG4_STEPS more from leg 3 (from the commit that shipped it, when not trained here), likewise.
# leg5:     leg 5: LEG5_STEPS more from leg 4, likewise.
# deep:     leg 6, a deeper network: DEEP_STEPS from leg 5 with DEEP_LAYERS LSTM layers, leg 5's three and new ones on
#           top that start by passing their input on (so it starts where leg 5 ended), likewise (DEEP_STEPS=0: none).
# deep2:    leg 7: DEEP2_STEPS more from leg 6, likewise.
# deep3:    leg 8: DEEP3_STEPS more from leg 7, likewise.
# deep4:    leg 9: DEEP4_STEPS more from leg 8, likewise (default 0: none; leg 8 is the shipped model).
# export:   the last leg's best checkpoint (by dev WER) -> model-fp16.safetensors. tune: LM weights on the dev sets.
# fit:      how well the last leg fits its training speech: greedy WER on FIT_SIZE utterances drawn from each training
#           manifest (as the data stage left it) beside the dev sets; a network whose training WER is no better than
#           its dev WER is full (more steps or speech will not help it much), one far better has learnt its data.
# evaluate: every set, greedy and with the LM. install: the model and LM into asr/assets.
# stream:   the streaming model (forward-only LSTMs, a lookahead convolution, global feature statistics): STREAM_STEPS
#           from the shipped model's weights (its forward LSTM directions; leg 3, from git when not trained here) on
#           the same mix, then its best checkpoint exported. stream-more: its second leg, STREAM_MORE_STEPS more from
#           it (a learning-rate cycle of its own; 0: none). stream-tune: the recipe's LM ($EXP/lm.*) linked beside it
#           (model-fp16.lm.*) and its own LM weights tuned on the dev sets. stream-evaluate: every set, greedy and
#           with that LM and those weights. stream-install: it into asr/assets/streaming.*, with its weights
#           (streaming.lm.tuned.json; the shipped models share one LM).
#           Like install, the stream stages run only when named: run.sh stream stream-install
#
# Data it needs (defaults: the development machines' data folder beside the checkout; README.md says what each
# is): KOKORO (../shared/data/kokoro: voices.npz, and the shared corpus with its unseen-voice dev split), CATHY
# (../shared/data/cathy), and the mixed recipe's TEXT_DIR, SPEECHOCEAN and REAL_DEV; the kokoro extra and the TTS
# engines of scripts/install_tts.sh. PYTHON: the Python asr is installed in.
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/lib.sh

export TEXT_DIR=${TEXT_DIR:-../shared/data/text}
export SPEECHOCEAN=${SPEECHOCEAN:-../shared/data/speechocean762}
export REAL_DEV=${REAL_DEV:-../shared/data/real-dev/manifest.jsonl}
KOKORO=${KOKORO:-../shared/data/kokoro}
CATHY=${CATHY:-../shared/data/cathy}
KOKORO_HOURS=${KOKORO_HOURS:-20}
CURVE=${CURVE:-0h 1.5h 3h all}
CURVE_STEPS=${CURVE_STEPS:-300}
TRAIN_STEPS=${TRAIN_STEPS:-900}
CONTINUE_STEPS=${CONTINUE_STEPS:-600}
MORE_STEPS=${MORE_STEPS:-600}
LEG4_STEPS=${LEG4_STEPS:-1500}
LEG5_STEPS=${LEG5_STEPS:-900}
DEEP_STEPS=${DEEP_STEPS:-1500}
DEEP_LAYERS=${DEEP_LAYERS:-4}
DEEP2_STEPS=${DEEP2_STEPS:-900}
DEEP3_STEPS=${DEEP3_STEPS:-900}
DEEP4_STEPS=${DEEP4_STEPS:-0}  # leg 9 (600 steps) did not beat leg 8: RESULTS.md
STREAM_STEPS=${STREAM_STEPS:-1200}
STREAM_MORE_STEPS=${STREAM_MORE_STEPS:-2000}
STREAM=exp/natural-streaming
STREAM2=exp/natural-streaming-leg2
LAST_STREAM=$STREAM; [ "$STREAM_MORE_STEPS" = 0 ] || LAST_STREAM=$STREAM2
STREAM_LM=$LAST_STREAM/model-fp16.lm  # the shared LM's files, linked beside the streaming model: weights of its own
STREAM_MODEL=(model.rnn_bidirectional=false model.lookahead=1 model.frontend.normalize=global)
KOKORO_EPOCH_HOURS=5  # Kokoro audio in each epoch, at every point of the curve
EXP=exp/natural
mkdir -p "$EXP"
START_MODEL=exp/mixed/model-fp16.safetensors  # the mixed recipe's model, shipped from a35632c
LEG2=exp/natural-leg2
LEG3=exp/natural-leg3
LEG4=exp/natural-leg4
LEG5=exp/natural-leg5
DEEP=exp/natural-deep
DEEP2=exp/natural-deep2
DEEP3=exp/natural-deep3
DEEP4=exp/natural-deep4
LAST_LEG=$EXP; [ "$CONTINUE_STEPS" = 0 ] || LAST_LEG=$LEG2; [ "$MORE_STEPS" = 0 ] || LAST_LEG=$LEG3
[ "$LEG4_STEPS" = 0 ] || LAST_LEG=$LEG4; [ "$LEG5_STEPS" = 0 ] || LAST_LEG=$LEG5; [ "$DEEP_STEPS" = 0 ] || LAST_LEG=$DEEP
[ "$DEEP2_STEPS" = 0 ] || LAST_LEG=$DEEP2; [ "$DEEP3_STEPS" = 0 ] || LAST_LEG=$DEEP3
[ "$DEEP4_STEPS" = 0 ] || LAST_LEG=$DEEP4
MODEL=$LAST_LEG/model-fp16.safetensors
LM=$EXP/lm.bin
DEV=(data/natural/real-dev.jsonl data/natural/kokoro-dev.jsonl data/speechocean762/dev.jsonl data/rhvoice/dev.jsonl
     data/synthetic/dev.jsonl)
TEST=(data/rhvoice/test.jsonl data/synthetic/test.jsonl)
TRAIN=(data/natural/kokoro-train.jsonl data/natural/cathy.jsonl data/speechocean762/train.jsonl data/synthetic/train.jsonl)
FIT_SIZE=${FIT_SIZE:-240}

need() {  # FILE WHAT...: stop with what is missing and where it comes from
    [ -e "$1" ] || { echo "run.sh: $1 not found: ${*:2} (recipes/natural/README.md)" >&2; exit 1; }
}

start_model() {  # the model it starts from: from its own run, else from the commit that shipped it
    model_from_git $START_MODEL a35632c "run recipes/mixed/run.sh (to its export stage)"
}

kokoro_manifest() {  # HOURS -> the Kokoro training manifest of the curve point HOURS (0h: none)
    case $1 in
        0h)  ;;
        all) echo data/natural/kokoro-train.jsonl ;;
        *)   echo data/natural/kokoro-train-$1.jsonl ;;
    esac
}

curve_subsets() {  # the curve's Kokoro amounts that are subsets, in hours: "0h 1.5h 3h all" -> "1.5 3"
    local hours
    for hours in $CURVE; do case $hours in 0h|all) ;; *) echo "${hours%h}" ;; esac; done
}

train() {  # EXP_DIR KOKORO_HOURS STEPS VALIDATE_EVERY [OVERRIDE...]: fine-tune on the mix with that much Kokoro,
           # weighted to KOKORO_EPOCH_HOURS of each epoch
    local exp=$1 kokoro manifests=data/synthetic/train.jsonl,data/speechocean762/train.jsonl,data/natural/cathy.jsonl
    local weights=0.1,0.7,2.0 steps=$3 every=$4
    kokoro=$(kokoro_manifest "$2")
    shift 4
    if [ -n "$kokoro" ]; then
        manifests+=",$kokoro"
        weights+=",$($PYTHON -c "import sys; from asr.core.manifest import read_manifest; \
            print(round($KOKORO_EPOCH_HOURS * 3600 / sum(u.duration for u in read_manifest(sys.argv[1])), 3))" "$kokoro")"
    fi
    fine_tune recipes/natural/natural.yaml "$exp" "$steps" "$every" "$manifests" "$weights" "$@"
}

next_leg() {  # FROM COMMIT TO STEPS VALIDATIONS [OVERRIDE...]: a leg of STEPS (0: none) from the model of FROM (from
              # the commit that shipped it when not trained here) on the Kokoro corpus as it now stands, a cycle of
              # its own
    [ "$4" = 0 ] && return
    model_from_git "$1"/model-fp16.safetensors "$2" "run the stage that trains $1"
    train "$3" all "$4" $(($4 / $5)) init_from="$1"/model-fp16.safetensors "${@:6}"
}

stage() {
    case $1 in
        corpus)   need "$KOKORO/voices.npz" "the Kokoro voice packs; set KOKORO to the folder holding voices.npz"
                  $PYTHON -m asr synth "$TEXT_DIR"/libritts_tc100.txt --voices kokoro --out data/kokoro \
                      --hours "$KOKORO_HOURS" --seed 0 --jobs "${JOBS:-1}" --voice-packs "$KOKORO"/voices.npz \
                      --exclude "$KOKORO"/manifest.jsonl "$REAL_DEV" "$SPEECHOCEAN"/manifest.jsonl ;;
        data)     need "$KOKORO/manifest.jsonl" "the shared Kokoro corpus, whose dev split is the unseen-voice dev set"
                  need "$CATHY/manifest.jsonl" "Cathy's recordings (a manifest.jsonl and its audio); set CATHY"
                  recipes/mixed/run.sh data data
                  $PYTHON recipes/natural/prepare.py data/natural --kokoro "$KOKORO" --kokoro-made data/kokoro \
                      --cathy "$CATHY" --real-dev "$REAL_DEV" --held-out data/speechocean762/dev.jsonl "${TEST[@]}" \
                      data/rhvoice/dev.jsonl data/synthetic/dev.jsonl --hours $(curve_subsets) ;;
        lm)       build_lm $EXP $LM "${DEV[@]}" "${TEST[@]}" ;;
        curve)    start_model
                  for hours in $CURVE; do
                      train exp/natural-curve-$hours "$hours" "$CURVE_STEPS" "$CURVE_STEPS" >&2
                      echo "# Kokoro $hours, $CURVE_STEPS steps"
                      $PYTHON -m asr evaluate --model exp/natural-curve-$hours/model-fp16.safetensors "${DEV[@]}" \
                          --decoder greedy
                  done | tee -a $EXP/curve.txt ;;
        train)    need exp/natural-curve-all/model-fp16.safetensors "the curve's last model: run the curve stage first"
                  train $EXP all "$TRAIN_STEPS" $((TRAIN_STEPS / 3)) init_from=exp/natural-curve-all/model-fp16.safetensors ;;
        continue) [ "$CONTINUE_STEPS" = 0 ] && return
                  need $EXP/model-fp16.safetensors "leg 1: run the train stage first"
                  train $LEG2 all "$CONTINUE_STEPS" $((CONTINUE_STEPS / 2)) init_from=$EXP/model-fp16.safetensors ;;
        more)     next_leg $LEG2 4328bee $LEG3 "$MORE_STEPS" 2 ;;
        leg4)     next_leg $LEG3 d7ff3b9 $LEG4 "$LEG4_STEPS" 3 ;;
        leg5)     next_leg $LEG4 df3c798 $LEG5 "$LEG5_STEPS" 3 ;;
        deep)     next_leg $LEG5 04851b4 $DEEP "$DEEP_STEPS" 3 model.rnn_layers="$DEEP_LAYERS" ;;
        deep2)    next_leg $DEEP ca1218b $DEEP2 "$DEEP2_STEPS" 3 ;;
        deep3)    next_leg $DEEP2 9b8f868 $DEEP3 "$DEEP3_STEPS" 3 ;;
        deep4)    next_leg $DEEP3 677a9da $DEEP4 "$DEEP4_STEPS" 2 ;;
        export)   export_best $LAST_LEG ;;
        fit)      draws=$($PYTHON -c "import random, sys; from pathlib import Path; \
                      from asr.core.manifest import read_manifest, write_manifest; \
                      rows = {Path(sys.argv[1]) / f'fit-{Path(m).parent.name}-{Path(m).name}': read_manifest(m) \
                              for m in sys.argv[3:]}; \
                      [write_manifest(path, random.Random(0).sample(r, min(int(sys.argv[2]), len(r)))) \
                       or print(path) for path, r in rows.items()]" $EXP "$FIT_SIZE" "${TRAIN[@]}")
                  $PYTHON -m asr evaluate --model $MODEL $draws "${DEV[@]}" --decoder greedy | tee $LAST_LEG/fit.txt ;;
        tune)     tune_lm $EXP $MODEL $LM "${DEV[@]}" ;;
        evaluate) evaluate_all $MODEL $LM $LAST_LEG/scores.txt "${DEV[@]}" "${TEST[@]}" ;;
        install)  install_model $MODEL $LM ;;
        stream)   model_from_git $LEG3/model-fp16.safetensors d7ff3b9 "leg 3: run the more stage"
                  train $STREAM all "$STREAM_STEPS" $((STREAM_STEPS / 3)) init_from=$LEG3/model-fp16.safetensors \
                      "${STREAM_MODEL[@]}" optim.lr=1e-3 ;;
        stream-more) [ "$STREAM_MORE_STEPS" = 0 ] && return
                  need $STREAM/model-fp16.safetensors "the streaming model's first leg: run the stream stage first"
                  train $STREAM2 all "$STREAM_MORE_STEPS" $((STREAM_MORE_STEPS / 4)) init_from=$STREAM/model-fp16.safetensors \
                      "${STREAM_MODEL[@]}" optim.lr=1e-3 ;;
        stream-tune) for part in bin lexicon.txt; do ln -sf "$(realpath $EXP/lm.$part)" $STREAM_LM.$part; done
                  tune_lm $EXP $LAST_STREAM/model-fp16.safetensors $STREAM_LM.bin "${DEV[@]}" ;;
        stream-evaluate) need $STREAM_LM.tuned.json "the streaming model's LM weights: run the stream-tune stage"
                  evaluate_all $LAST_STREAM/model-fp16.safetensors $STREAM_LM.bin $LAST_STREAM/scores.txt "${DEV[@]}" \
                      "${TEST[@]}" ;;
        stream-install)  install_model $LAST_STREAM/model-fp16.safetensors "" streaming ;;
    esac
}

LAST=evaluate; case ${1:-} in install|stream*) LAST=$1 ;; esac  # a plain run stops before install
select_stages "${1:-corpus}" "${2:-$LAST}" corpus data lm curve train continue more leg4 leg5 deep deep2 deep3 deep4 export fit \
    tune evaluate install stream stream-more stream-tune stream-evaluate stream-install
run_stages
