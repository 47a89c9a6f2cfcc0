#!/usr/bin/env bash
# The benchmark suite on a GPU machine that has PyTorch but no network and no open_clip (the lent H200 image).
#
#   benchmarks/cuda_device.sh fetch               # here, with network: the missing wheels into .whl/ (git-ignored)
#   benchmarks/cuda_device.sh run OUT [ARGS...]   # there: install them into /tmp/site, run the suite on CUDA in
#                                                 # fp32 then amp; tables and logs in OUT; ARGS go to both pytest
#                                                 # runs (a later --device/-k wins)
#
# The harness is imported from this checkout (PYTHONPATH), so no install step needs the network.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
fetch)
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    # Pure-Python wheels: the same files serve the device's Python 3.12 and this machine's.
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d .whl open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth
    ls .whl
    ;;
run)
    out="${2:?usage: $0 run OUT [pytest args...]}"
    shift 2
    ls .whl/*.whl > /dev/null || { echo "no wheels in .whl/: run '$0 fetch' first and carry .whl" >&2; exit 2; }
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
    (nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true) > "$out/gpu.txt" 2>&1
    status=0
    for precision in fp32 amp; do
        python3 -m pytest benchmarks --benchmark-only -p no:cacheprovider --device cuda \
            --bench-precision "$precision" --bench-report "$out/cuda_$precision.md" "$@" \
            > "$out/cuda_$precision.log" 2>&1 || status=$?
        tail -n 40 "$out/cuda_$precision.log"
    done
    exit "$status"
    ;;
*)
    echo "usage: $0 fetch | run OUT [pytest args...]" >&2
    exit 2
    ;;
esac
