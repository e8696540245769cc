#!/usr/bin/env bash
# The prepared GPU check (one device call of at most 10 minutes): the full-size benchmark, the gpu-marked tests,
# a float16 sampling pass checked for finite outputs. Results land in $OUT (default benchmarks/out/gpu).
#   bash benchmarks/gpu_run.sh            # on a machine with CUDA and this checkout's venv active
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out/gpu}
mkdir -p "$OUT"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" \
  | tee "$OUT/device.txt" || exit 1
# 1. full-size 21-frame SV4D (SV3D orbit + anchors + dense + decode), float16 autocast, then the switches
python benchmarks/full_size.py --kind sv4d --dtype float16 --json "$OUT/sv4d_fp16.json" | tail -1
python benchmarks/full_size.py --kind sv4d --dtype bfloat16 --json "$OUT/sv4d_bf16.json" | tail -1
python benchmarks/full_size.py --kind sv4d --dtype float16 --sdpa flash --json "$OUT/sv4d_fp16_flash.json" | tail -1
python benchmarks/full_size.py --kind sv4d --dtype float16 --channels-last --json "$OUT/sv4d_fp16_cl.json" | tail -1
timeout 300 python benchmarks/full_size.py --kind sv4d --dtype float16 --compile --json "$OUT/sv4d_fp16_compile.json" | tail -1
# 2. SV4D 2.0 kinds (12-frame windows / 8 views)
python benchmarks/full_size.py --kind sv4d2 --dtype float16 --json "$OUT/sv4d2_fp16.json" | tail -1
python benchmarks/full_size.py --kind sv4d2_8views --dtype float16 --json "$OUT/sv4d2_8views_fp16.json" | tail -1
# 3. the gpu-marked tests (CUDA sampling, tinycudann parity when a wheel installs)
python -m pip install -q tinycudann 2>/dev/null || echo "tinycudann: no wheel for this platform (parity test skips)"
python -m pytest -m gpu -q -rs 2>&1 | tail -5 | tee "$OUT/gpu_tests.txt"
