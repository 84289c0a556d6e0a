#!/usr/bin/env bash
# The default model, end to end: corpus -> train -> bundle -> scores -> asr/assets/default.safetensors.
#
#   recipes/synthetic/run.sh [STAGE]     stages: corpus train export evaluate install (default: corpus, all)
#
# Run from anywhere; paths are relative to the repository root. Set HOURS (11.5 -> ~10.3 h of training speech).
set -euo pipefail
cd "$(dirname "$0")/../.."

STAGE=${1:-corpus}
HOURS=${HOURS:-11.5}
EXP=exp/synthetic
REAL_DEV=../shared/data/real-dev/manifest.jsonl
stages=(corpus train export evaluate install)

started=false
for stage in "${stages[@]}"; do
    [ "$stage" = "$STAGE" ] && started=true
    $started || continue
    echo "== stage $stage" >&2
    case $stage in
        corpus)   recipes/synthetic/make_corpus.sh "$HOURS" data/synthetic ;;
        train)    python3 -m asr train recipes/synthetic/synthetic.yaml exp_dir=$EXP --resume ;;
        export)   python3 -m asr export "$(ls $EXP/checkpoints/best-*.ckpt | head -1)" $EXP/model-fp16.safetensors --dtype float16 ;;
        evaluate) python3 -m asr evaluate --model $EXP/model-fp16.safetensors data/synthetic/dev.jsonl \
                      data/synthetic/test.jsonl "$REAL_DEV" --out $EXP/hyps.jsonl | tee $EXP/scores.txt ;;
        install)  cp $EXP/model-fp16.safetensors asr/assets/default.safetensors ;;
    esac
done
