#!/usr/bin/env bash
# The multi-GPU checks that CPU tests cannot make, in one go (a few minutes; benchmarks/run_gpu.sh runs it):
#   bash scripts/gpu_smoke.sh [folder, default .cache/gpu_smoke]
#   bash scripts/gpu_smoke.sh --cpu [folder]     the script's plumbing on the CPU: 2 gloo processes for 2 GPUs,
#                                                fp32 only, the "second GPU" is the CPU, bf16 instead of fp16
# 1. a DDP step on 2 GPUs (NCCL) == 1 GPU on the combined batch, fp32 and amp, text tower frozen and trained
# 2. test.py on 2 GPUs with an odd number of videos (uneven shards) == 1 GPU
# 3. a rank that raises ends the NCCL job promptly, with that rank's traceback in the output
# 4. amp skips the optimizer step on an injected inf gradient (weights unchanged, scale halved), then trains
# 5. a checkpoint saved on cuda:0 resumes on cuda:1
# 6. --precision fp16 training keeps float32 weights and moves them at the configs' learning rate (5e-6)
# Prints PASS/FAIL/SKIP per check (checks that need 2 GPUs are skipped on one) and exits non-zero on a FAIL.
set -uo pipefail
cd "$(dirname "$0")/.."
device=cuda
if [ "${1:-}" = "--cpu" ]; then device=cpu; shift; fi
out=${1:-.cache/gpu_smoke}
mkdir -p "$out"
rm -rf "$out/exps"  # run folders of an earlier run
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
python=$(command -v python || command -v python3)
if [ "$device" = cuda ]; then
    gpus=$("$python" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
    [ "$gpus" -gt 0 ] || { echo "no GPU visible (bash $0 --cpu checks the script's plumbing on the CPU)"; exit 1; }
    cpu_flag=()
    precisions=(fp32 amp)
    second_device=cuda:1
    low_precision=fp16
else
    gpus=2  # two gloo processes stand in for two GPUs
    cpu_flag=(--cpu)
    precisions=(fp32)
    second_device=cpu  # checks the script's plumbing only
    low_precision=bf16  # fp16 needs a GPU; bf16 autocast also keeps float32 weights
fi
failures=0 passes=0 skips=0
torchrun2() { "$python" -m torch.distributed.run --standalone --nproc_per_node=2 "$@"; }

check() {  # check NAME GPUS_NEEDED COMMAND...: runs COMMAND, logs it to $out/NAME.txt, reports PASS/FAIL/SKIP
    local name=$1 needed=$2
    shift 2
    if [ "$gpus" -lt "$needed" ]; then
        echo "SKIP $name: needs $needed GPUs, $gpus visible"
        skips=$((skips + 1))
        return
    fi
    if "$@" > "$out/$name.txt" 2>&1; then
        echo "PASS $name: $(grep '^PASS' "$out/$name.txt" | tail -1 | cut -c6-)"
        passes=$((passes + 1))
    else
        echo "FAIL $name (log: $out/$name.txt)"
        tail -n 15 "$out/$name.txt" | sed 's/^/    /'
        failures=$((failures + 1))
    fi
}

ddp_step() {  # ddp_step TEXT PRECISION
    torchrun2 tests/ddp_step.py "$out/step_$1_$2.pt" "$1" "$device" "$2" &&
        "$python" tests/gpu_checks.py compare-step "$out/step_$1_$2.pt" "$1" "$device" "$2"
}

uneven_test_shards() {
    local common=(--config "$out/odd.yaml" --weights "$out/model_best.pt" --test_crops 3 --no_progress "${cpu_flag[@]}")
    torchrun2 test.py "${common[@]}" --save_scores "$out/scores_two.pt" &&
        "$python" test.py "${common[@]}" --save_scores "$out/scores_one.pt" &&
        "$python" tests/gpu_checks.py compare-scores "$out/scores_one.pt" "$out/scores_two.pt"
}

failing_rank_ends_the_job() {
    local start=$SECONDS mode=()
    [ "$device" = cuda ] && mode=(gpu)
    if timeout 300 "$python" -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_failure.py fail "${mode[@]}"; then
        echo "the job succeeded although rank 1 raised"; return 1
    fi
    local elapsed=$((SECONDS - start))
    grep -q "\[rank 1\] ValueError: cannot decode video_042.mp4" "$out/failing_rank.txt" || { echo "no rank-1 traceback"; return 1; }
    [ "$elapsed" -lt 120 ] || { echo "the job took $elapsed s to end"; return 1; }
    echo "PASS the job ended $elapsed s after rank 1 raised, with its traceback"
}

run_folder() {  # run_folder LOG_TIME: the folder train.py made for --log_time LOG_TIME
    find "$out/exps" -mindepth 3 -type d -name "$1" | head -n 1
}

resume_on_another_gpu() {
    local common=(--config "$out/tiny.yaml" --no_progress "${cpu_flag[@]}")
    "$python" train.py "${common[@]}" --log_time first solver.epochs=1 &&
        LOCAL_RANK=1 "$python" train.py "${common[@]}" --log_time second solver.epochs=2 \
            "resume=$(run_folder first)/last_model.pt" || return 1
    grep -q "on $second_device" "$(run_folder second)/log.txt" || { echo "the second run was not on $second_device"; return 1; }
    grep -q "resumed from" "$(run_folder second)/log.txt" || { echo "no resume line in the log"; return 1; }
    echo "PASS saved on the first device, resumed and trained on $second_device"
}

fp16_moves_weights() {
    "$python" train.py --config "$out/tiny.yaml" --log_time fp16 --precision "$low_precision" --no_progress "${cpu_flag[@]}" \
        solver.epochs=3 solver.lr=5e-6 solver.lr_warmup_step=0 &&  # 6 steps: the scaler may skip the first ones
        "$python" tests/gpu_checks.py weights-moved "$out/tiny.yaml" "$(run_folder fp16)/last_model.pt"
}

"$python" tests/gpu_checks.py prepare "$out" > "$out/prepare.txt" 2>&1 || { cat "$out/prepare.txt"; exit 1; }
for precision in "${precisions[@]}"; do
    for text in fixed trained; do
        check "ddp_step_${precision}_${text}" 2 ddp_step "$text" "$precision"
    done
done
check uneven_test_shards 2 uneven_test_shards
check failing_rank 2 failing_rank_ends_the_job
check amp_skips_inf 1 "$python" tests/gpu_checks.py amp-skips-inf "$out/tiny.yaml" "$device"
check resume_on_cuda1 2 resume_on_another_gpu
check fp16_training 1 fp16_moves_weights
echo "$passes passed, $failures failed, $skips skipped"
[ "$failures" -eq 0 ]
