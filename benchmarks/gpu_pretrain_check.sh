#!/usr/bin/env bash
# The GPU check of issue 21 as one command: the card, the attention kernels at gpt2-124m's shape,
# then gpt2-124m pretraining throughput (MFU, tokens/s, step time, memory, data wait) for each
# mode side by side, and the profiler's breakdown of the first mode's step.
#
#     bash benchmarks/gpu_pretrain_check.sh                  # results also under $OUT (default /tmp/gpu_check)
#     MODES=compile+bf16 BATCHES=32,64 bash benchmarks/gpu_pretrain_check.sh
#
# Each step has a time limit (LIMIT_S for the throughput run, default 480 s), so that a hang
# leaves the rest of a short GPU lease; every compiled mode costs about a minute of compiling.
#
# FP8 needs torchao: put its wheel in .whl/ (`pip download --no-deps torchao==VERSION -d .whl`,
# the version made for the GPU machine's torch); it is installed into /tmp/site, nowhere else.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/torchao-*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/torchao-*.whl \
        && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 -c "import torchao; print('torchao', torchao.__version__)" 2>&1 | tail -1
timeout 120 python3 benchmarks/attention_backends.py 2>&1 | tee "$OUT/attention.txt"
timeout "${LIMIT_S:-480}" python3 benchmarks/pretrain_throughput.py --preset gpt2-124m \
    --modes "${MODES:-compile+bf16,compile+bf16+flash,compile+bf16+fp8}" --batch-sizes "${BATCHES:-64}" \
    --steps "${STEPS:-10}" --warmup 3 --profile --json "$OUT/throughput.json" 2>&1 | tee "$OUT/throughput.txt"
