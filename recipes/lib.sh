# What recipes/*/run.sh share; each sources it from the repository root (after its `cd`):
#
#   stage() { case $1 in NAME) ... ;; esac; }     what each stage does, defined by the recipe
#   select_stages FIRST LAST STAGE...             the stages from FIRST to LAST, in the array `todo`
#   run_stages                                    runs them in order, each announced on stderr
#
# PYTHON is the Python that asr is installed in (default: python3 on the PATH), exported for the scripts the
# recipes call.

export PYTHON=${PYTHON:-python3}

select_stages() {  # FIRST LAST STAGE...: `todo` = the STAGEs from FIRST to LAST; exit 2 naming them if there are none
    local first=$1 last=$2 stage started=false
    shift 2
    todo=()
    for stage in "$@"; do
        [ "$stage" = "$first" ] && started=true
        $started && todo+=("$stage")
        $started && [ "$stage" = "$last" ] && return
    done
    echo "run.sh: no stages from '$first' to '$last'; the stages are, in order: $*" >&2
    exit 2
}

run_stages() {  # `stage NAME` for each NAME in `todo`
    local name
    for name in "${todo[@]}"; do
        echo "== stage $name" >&2
        stage "$name"
    done
}

export_best() {  # EXP_DIR: its best checkpoint by dev WER -> EXP_DIR/model-fp16.safetensors
    local best
    best=$(ls -t "$1"/checkpoints/best-*.ckpt 2>/dev/null | head -1 || true)
    [ -n "$best" ] || { echo "run.sh: no best-*.ckpt in $1/checkpoints: that run has not been trained" >&2; exit 1; }
    "$PYTHON" -m asr export "$best" "$1"/model-fp16.safetensors --dtype float16
}

install_model() {  # MODEL [LM.bin [NAME]]: the model (bundle, ONNX export) becomes the shipped model NAME (default:
                   # "default"), LM (+ LM.lexicon.txt, LM.tuned.json) the LM that the shipped models share, and the
                   # model's own weights for it (MODEL.lm.tuned.json, where tuned) NAME's (NAME.lm.tuned.json)
    local name=${3:-default} part own=${1%.safetensors}.lm.tuned.json
    mkdir -p asr/assets && cp "$1" asr/assets/$name.safetensors
    "$PYTHON" -m asr export asr/assets/$name.safetensors asr/assets/$name.onnx --format onnx  # what asr runs
    [ -z "${2:-}" ] || for part in bin lexicon.txt tuned.json; do cp "${2%.bin}.$part" asr/assets/default.lm.$part; done
    [ ! -f "$own" ] || cp "$own" asr/assets/$name.lm.tuned.json
}

model_from_git() {  # PATH COMMIT WHAT: a model shipped at COMMIT into PATH, unless PATH is there (WHAT: how else)
    [ -f "$1" ] && return
    mkdir -p "$(dirname "$1")"
    git show "$2":asr/assets/default.safetensors > "$1.partial" && mv "$1.partial" "$1" || {
        rm -f "$1.partial"
        echo "run.sh: no $1: $3, or use a git clone of asr" >&2
        exit 1
    }
}

tune_lm() {  # EXP MODEL LM DEV...: the LM's weights tuned on the dev sets pooled (EXP/dev-all.jsonl) -> LM.tuned.json
    local exp=$1 model=$2 lm=$3
    shift 3
    "$PYTHON" -c "import sys; from asr.core.manifest import read_manifest, write_manifest; \
        write_manifest(sys.argv[1], [u for m in sys.argv[2:] for u in read_manifest(m)])" "$exp"/dev-all.jsonl "$@"
    "$PYTHON" -m asr tune-lm --model "$model" --manifest "$exp"/dev-all.jsonl --lm "$lm" \
        --lm-weights 0.5,1,1.5,2 --word-scores=-1,0,1,2
}

evaluate_all() {  # MODEL LM SCORES MANIFEST...: every manifest scored greedily, then with the LM, into SCORES
    local model=$1 lm=$2 scores=$3 decoder
    shift 3
    for decoder in "--decoder greedy" "--lm $lm"; do
        echo "# asr evaluate $decoder"
        "$PYTHON" -m asr evaluate --model "$model" "$@" $decoder
    done | tee "$scores"
}

build_lm() {  # EXP LM HELD_OUT...: the 3-gram LM of TEXT_DIR's sentences, those of the HELD_OUT manifests left out
    local exp=$1 lm=$2
    shift 2
    "$PYTHON" recipes/synthetic/lm_text.py "$TEXT_DIR"/*.txt --exclude "$@" --out "$exp"/lm-text.txt
    "$PYTHON" -m asr lm build "$exp"/lm-text.txt --order 3 --out "$lm"
}

fine_tune() {  # CONFIG EXP STEPS VALIDATE_EVERY MANIFESTS WEIGHTS [OVERRIDE...]: asr train CONFIG on the comma-separated
               # MANIFESTS mixed by WEIGHTS, resumed if EXP has a checkpoint, then its best checkpoint exported
    local config=$1 exp=$2 steps=$3 every=$4 manifests=$5 weights=$6
    shift 6
    "$PYTHON" -m asr train "$config" exp_dir="$exp" trainer.max_steps="$steps" trainer.val_check_interval="$every" \
        "data.train_manifests=[$manifests]" "data.train_weights=[$weights]" "$@" --resume
    export_best "$exp"
}
