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

install_model() {  # MODEL LM.bin: the model and its LM (with LM.lexicon.txt, LM.tuned.json) become asr's default
    mkdir -p asr/assets && cp "$1" asr/assets/default.safetensors
    local part
    for part in bin lexicon.txt tuned.json; do cp "${2%.bin}.$part" asr/assets/default.lm.$part; done
}
