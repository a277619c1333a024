#!/usr/bin/env bash
# Every GPU figure of benchmarks/README.md in one run (about 8 minutes on one H100), after the
# multi-GPU correctness checks of scripts/gpu_smoke.sh (a few minutes; logs in FOLDER/smoke):
#   bash benchmarks/run_gpu.sh [folder for the logs, default .cache/gpu_bench]
# ViT-B/16 and ViT-L/14, 8 frames, batch 32, bf16 (ViT-B/16 also amp): training step and inference against
# the in-run matmul peak (the MFU), a profile breakdown, the OpenAI package's speed on the same tower,
# activation and peak memory, gradient checkpointing, torch.compile, and end-to-end training with the
# real data loader on the synthetic MP4s. Each benchmark's output goes to its own log.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-.cache/gpu_bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
workers=$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))
python=$(command -v python || command -v python3)

run() {  # run LOG COMMAND...: prints and keeps the output; a failing benchmark does not stop the others
    local log=$1
    shift
    echo "== $*" | tee "$out/$log"
    "$@" 2>&1 | grep -v "NOT a pretrained" | tee -a "$out/$log"
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$python" -c "import torch, torchvision; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'torchvision', torchvision.__version__)"
    nproc
} 2>&1 | tee "$out/device.txt"
bash scripts/gpu_smoke.sh "$out/smoke" 2>&1 | tee "$out/smoke.txt"
run model_b16.txt "$python" benchmarks/bench_model.py --arch ViT-B/16 --batch 32 --seconds 5 --precisions bf16 amp --grad_checkpointing
run train_b16.txt "$python" benchmarks/bench_train.py --arch ViT-B/16 --batch 32 --workers "$workers" --steps 40 --warmup 5
# The original implementation always recomputes activations: compare its memory figures with the grad ckpt lines.
run model_l14.txt "$python" benchmarks/bench_model.py --arch ViT-L/14 --batch 32 --seconds 5 --grad_checkpointing
# Parameter-efficient fine-tuning (network.peft): trainable parameters, exact memory projected to batch 32 / 16,
# bf16 step time of full fine-tuning, lora and aim, with and without gradient checkpointing.
run peft.txt "$python" benchmarks/bench_peft.py --archs ViT-B/16 ViT-L/14 --steps 5
run model_b16_compile.txt timeout 300 "$python" benchmarks/bench_model.py --arch ViT-B/16 --batch 32 --seconds 5 --compile

# Decoding on the GPU (data.decode_device: cuda): TorchCodec NVDEC and nvJPEG against the CPU, clips/s.
run decode_gpu.txt "$python" -m benchmarks.bench_gpu_decode --seconds 5
