#!/usr/bin/env bash
# The one command for a lent GPU (at most 8 minutes): the card, the versions, the gpu tests,
# xpconv check, and xpconv bench beside PyTorch's cuDNN (float32 with TF32 off and on, float16),
# then a table of xpconv/cuDNN ratios, and the launches per call with benchmarks/gpu_model.py's
# estimate for an H100 and an H200 beside them.  Everything goes to $OUT (default: a new temporary folder).
# It installs nothing: run it from a checkout with python3 that has numpy, cupy, torch and pytest.
#
#   bash benchmarks/gpu_check.sh                      # on the GPU machine
#   bash benchmarks/gpu_check.sh --device cpu --shapes mnist --min-seconds 0   # its plumbing, here
set -uo pipefail
cd "$(dirname "$0")/.."
device=cuda
shapes=""
min_seconds=0.3
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --shapes) shapes="$2"; shift 2 ;;
        --min-seconds) min_seconds="$2"; shift 2 ;;
        *) echo "gpu_check.sh: unknown option $1 (--device D, --shapes a,b, --min-seconds S)" >&2; exit 2 ;;
    esac
done
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
failed=0
step() {  # step NAME TIMEOUT COMMAND...: run, log, remember a failure, go on
    local name="$1" limit="$2"
    shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" || { echo "== $name FAILED (exit $?)"; failed=1; }
}
{
    date -u "+%Y-%m-%d %H:%M UTC"
    if [ "$device" != cpu ]; then step "card" 30 nvidia-smi -L; fi
    step "versions" 60 python3 -c "
import platform, numpy, xpconv
print('python', platform.python_version(), '| numpy', numpy.__version__, '| xpconv', xpconv.__version__)
try:
    import cupy; print('cupy', cupy.__version__, '| CUDA runtime', cupy.cuda.runtime.runtimeGetVersion(), '| driver', cupy.cuda.runtime.driverGetVersion())
except Exception as exc: print('cupy:', exc)
try:
    import torch; print('torch', torch.__version__, '| cuda', torch.version.cuda, '| cudnn', torch.backends.cudnn.version())
except Exception as exc: print('torch:', exc)
"
    step "gpu tests" 240 python3 -m pytest -m gpu -q -p no:cacheprovider tests
    step "check" 120 python3 -m xpconv check --device "$device" --dtype float16 --dtype float32 --dtype float64
    shape_args=(--full)
    if [ -n "$shapes" ]; then shape_args=(--shapes "$shapes"); fi
    runs=()
    if [ "$device" = cpu ]; then
        runs+=("float32 off")
    else
        runs+=("float32 off" "float32 on" "float16 off")
    fi
    for run in "${runs[@]}"; do
        read -r dtype tf32 <<< "$run"
        json="$OUT/bench-$dtype-tf32$tf32.json"
        tf32_args=(--tf32 "$tf32")
        if [ "$device" = cpu ]; then tf32_args=(); fi  # TF32 is a cuDNN setting: refused on the CPU
        step "bench $dtype tf32 $tf32" 150 python3 -m xpconv bench --device "$device" --dtype "$dtype" \
            "${shape_args[@]}" --no-book --min-seconds "$min_seconds" "${tf32_args[@]}" --json "$json"
    done
    step "ratios" 30 python3 benchmarks/ratio_table.py "$OUT"/bench-*.json
    # the launches per call (counted on the CuPy stand-in) and the model's estimate, to set beside
    # the measured times above
    model_args=()
    if [ -n "$shapes" ]; then model_args=(--shapes "$shapes"); fi
    for gpu in h100 h200; do
        step "model $gpu" 60 python3 benchmarks/gpu_model.py --gpu "$gpu" "${model_args[@]}"
    done
    echo "== done; failed steps: $failed"
} 2>&1 | tee "$OUT/gpu_check.log"
exit "$failed"
