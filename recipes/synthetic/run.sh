#!/usr/bin/env bash
# The default model, end to end: corpus -> train -> bundle -> LM -> scores -> asr/assets/default.*
#
#   recipes/synthetic/run.sh [STAGE]     stages: corpus train export lm tune evaluate install
#                                        (default: corpus, then all that follow)
#
# Run from anywhere; paths are relative to the repository root. Set HOURS (11.5 -> ~10.3 h of training speech).
set -euo pipefail
cd "$(dirname "$0")/../.."

STAGE=${1:-corpus}
HOURS=${HOURS:-11.5}
EXP=exp/synthetic
MODEL=$EXP/model-fp16.safetensors
LM=$EXP/lm.bin
SPLITS=(data/synthetic/dev.jsonl data/synthetic/test.jsonl ../shared/data/real-dev/manifest.jsonl)
stages=(corpus train export lm tune evaluate install)

started=false
for stage in "${stages[@]}"; do
    [ "$stage" = "$STAGE" ] && started=true
    $started || continue
    echo "== stage $stage" >&2
    case $stage in
        corpus)   recipes/synthetic/make_corpus.sh "$HOURS" data/synthetic ;;
        train)    python3 -m asr train recipes/synthetic/synthetic.yaml exp_dir=$EXP --resume ;;
        export)   python3 -m asr export "$(ls -t $EXP/checkpoints/best-*.ckpt | head -1)" $MODEL --dtype float16 ;;
        lm)       # every sentence of the text corpora except those read in the scored sets
                  python3 recipes/synthetic/lm_text.py ../shared/data/text/*.txt --exclude "${SPLITS[@]}" \
                      --out $EXP/lm-text.txt
                  python3 -m asr lm build $EXP/lm-text.txt --order 3 --out $LM ;;
        tune)     python3 -m asr tune-lm --model $MODEL --manifest data/synthetic/dev.jsonl --lm $LM ;;
        evaluate) for decoder in "--decoder greedy" "--decoder beam" "--lm $LM"; do
                      echo "# asr evaluate $decoder"
                      python3 -m asr evaluate --model $MODEL "${SPLITS[@]}" $decoder
                  done | tee $EXP/scores.txt ;;
        install)  mkdir -p asr/assets && cp $MODEL asr/assets/default.safetensors
                  for part in bin lexicon.txt tuned.json; do cp $EXP/lm.$part asr/assets/default.lm.$part; done ;;
    esac
done
