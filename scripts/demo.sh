#!/usr/bin/env bash
# The quick start: install, generate the synthetic demo videos, pretrain a small CLIP on captioned stills
# of the same world (stage 1, skipped when already done), train BIKE on the videos from it (stage 2) and
# test it multi-view. A few minutes on 2 CPU cores; nothing is downloaded except Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements.txt
python tools/make_demo_data.py --out .cache/demo_data --no-progress
python tools/pretrain_demo_clip.py --out .cache/demo_clip/RN-Tiny-synthetic.pt
# fp32 also on CPUs whose default is bf16: the tiny ResNet gains little from bf16, and the demo's
# figures (and its ablation table) are fp32 figures that a bf16 run would move by rounding.
python train.py --config configs/demo/demo.yaml --log_time demo --precision fp32 "$@"
run=exps/demo/RN-Tiny-synthetic/demo
python test.py --config configs/demo/demo.yaml --weights "$run/model_best.pt" --test_clips 2 --test_crops 3 \
    --precision fp32 --save_scores "$run/test_scores.pt"
echo "Demo finished: checkpoints, log and scores in $run"
