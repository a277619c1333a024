#!/usr/bin/env bash
# docs/demo.md's table of parameter-efficient fine-tuning in the demo world, in one command:
#   bash benchmarks/demo_peft_table.sh [--epochs N] [row ...]   (rows: frozen lora aim full; default all four;
#                                                               N: stage 2's epochs, default the config's 48)
# Stage 1 of a small ViT (ViT-Tiny/4, skipped when done), then for each row stage 2 of
# configs/demo/demo_vit.yaml in fp32 (as the demo) with the row's overrides and test.py's multi-view test
# (2 clips x 3 crops) of its best model; prints one markdown row per run: test top-1, right pair of classes,
# right direction within the pair, trainable parameters (the training log's line) and the wall time of
# training and test. Runs go to exps/demo/ViT-Tiny-4-synthetic/peft_<row>/.
set -euo pipefail
cd "$(dirname "$0")/.."
config=configs/demo/demo_vit.yaml
folder=exps/demo/ViT-Tiny-4-synthetic
declare -A overrides=(
    [frozen]=""                                           # the image tower fixed, as demo.yaml
    [lora]="network.fix_video=False network.peft=lora"
    [aim]="network.fix_video=False network.peft=aim"
    [full]="network.fix_video=False"                      # the whole image tower trains (at lr x clip_ratio)
)
epochs=()
if [[ "${1:-}" == "--epochs" ]]; then
    [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "error: --epochs needs a positive number of epochs, got '${2:-}'" >&2; exit 2; }
    epochs=("solver.epochs=$2")
    shift 2
fi
rows=("${@:-frozen lora aim full}")
read -r -a rows <<< "${rows[*]}"

for row in "${rows[@]}"; do
    [[ -v overrides[$row] ]] || { echo "error: unknown row $row (frozen, lora, aim, full)" >&2; exit 2; }
done
python tools/make_demo_data.py --out .cache/demo_data --no-progress
python tools/pretrain_demo_clip.py --arch ViT-Tiny/4
lines=()
for row in "${rows[@]}"; do
    run=$folder/peft_$row
    started=$SECONDS
    # shellcheck disable=SC2086  # the overrides are separate words
    python train.py --config $config --log_time "peft_$row" --precision fp32 --no_progress ${overrides[$row]} ${epochs[@]+"${epochs[@]}"}
    python test.py --config $config --weights "$run/model_best.pt" --test_clips 2 --test_crops 3 --precision fp32 \
        --no_progress --save_scores "$run/test_scores.pt"
    seconds=$((SECONDS - started))
    trainable=$(grep -o -m1 "trainable parameters: .*" "$run/log.txt" | sed "s/trainable parameters: //")
    lines+=("$(python - "$run/test_scores.pt" "$row" "$trainable" "$seconds" <<'EOF'
import sys

import torch

scores_file, row, trainable, seconds = sys.argv[1:]
saved = torch.load(scores_file)
scores, labels = saved["scores"], saved["labels"]
# The demo's classes come in pairs 2k, 2k+1 of a motion and its time reversal (datasets/synthetic.py).
partner = labels ^ 1
top1 = (scores.argmax(1) == labels).float().mean()
pair = (scores.argmax(1) // 2 == labels // 2).float().mean()
direction = (scores.gather(1, labels[:, None]) > scores.gather(1, partner[:, None])).float().mean()
minutes, rest = divmod(int(seconds), 60)
print(f"| {row} | {100 * top1:.1f}% | {100 * pair:.1f}% | {100 * direction:.1f}% | {trainable} | {minutes} min {rest} s |")
EOF
)")
done
echo "| image tower | test top-1 | right pair of classes | right direction within the pair | trainable parameters | time (training + test) |"
echo "| --- | --- | --- | --- | --- | --- |"
printf "%s\n" "${lines[@]}"
