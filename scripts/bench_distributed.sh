#!/usr/bin/env bash
# Weak scaling of `skesl pretrain` and `skesl finetune` on 1 and 2 MPI ranks (1 OpenBLAS
# thread each) at reference shapes (BERT-base, L 39, audio 400x33, video 55x709), with the
# share of step time spent waiting on the gradient all-reduce; then PyTorch DDP (gloo) on
# the same configuration in the same run (needs `scripts/setup --torch`).
#   scripts/bench_distributed.sh [PER_RANK_BATCH=16] [STEPS=6]
set -euo pipefail
cd "$(dirname "$0")/.."
PER=${1:-16}; STEPS=${2:-6}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
swift build -c release --product skesl 2>&1 | tail -1
SKESL=$(swift build -c release --show-bin-path)/skesl
W=$(mktemp -d /tmp/skesl-dist-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
"$SKESL" synth --out "$W/store" --samples $(( PER * 2 * (STEPS + 2) )) --labeled --seed 1 >/dev/null
"$SKESL" synth --write-vocab "$W/vocab.txt" --out "$W/unused" --samples 1 >/dev/null 2>&1 || true
[ -s "$W/vocab.txt" ] || { echo "bench_distributed: needs skesl synth --write-vocab"; exit 1; }

run() {  # task ranks
  local task=$1 np=$2 batch=$(( PER * $2 ))
  local extra=(--set data.tokenizer="$W/vocab.txt" --set train.globalBatch=$batch --set train.maxSteps=$STEPS
               --set train.epochs=100 --set logEverySeconds=0.001 --store "$W/store" --run-dir "$W/$task-$np" --resume none)
  [ "$task" = finetune ] && extra+=(--set model.freezeBert=false --set train.optimizer.groupLR.bert=5.0e-6)
  local t0=$(date +%s.%N)
  mpirun --allow-run-as-root --oversubscribe -np "$np" --bind-to core "$SKESL" "$task" "${extra[@]}" > "$W/$task-$np.out" 2> "$W/$task-$np.err"
  # Samples/s over the steps after the first (warm-up), from the metrics log's train records.
  python3 - "$W/$task-$np/metrics.jsonl" "$task" "$np" "$W/$task-$np.err" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"train"' in l]
recs = [r for r in recs if r.get("kind") == "train"] or recs
timed = recs[1:] if len(recs) > 1 else recs
samples = sum(r["samples"] for r in timed); secs = sum(r["samples"] / r["samples_per_s"] for r in timed)
wait = [l.strip() for l in open(sys.argv[4]) if "gradient all-reduce" in l]
print(json.dumps({"skesl": sys.argv[2], "ranks": int(sys.argv[3]), "samples_per_s": round(samples / secs, 3),
                  "allreduce": wait[0] if wait else "single rank"}))
PY
}
for task in pretrain finetune; do
  for np in 1 2; do run $task $np | tee -a "$W/results.jsonl"; done
done
python3 - "$W/results.jsonl" <<'PY'
import json, sys
r = {(d["skesl"], d["ranks"]): d["samples_per_s"] for d in map(json.loads, open(sys.argv[1]))}
for t in ("pretrain", "finetune"):
    e = r[(t, 2)] / (2 * r[(t, 1)])
    print("skesl %-8s weak scaling 1 -> 2 ranks: %.2f -> %.2f samples/s, efficiency %.0f%%" % (t, r[(t, 1)], r[(t, 2)], 100 * e))
PY
if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python scripts/bench_torch_ddp.py --worlds 1,2 --per-rank "$PER" --steps 4
else
  echo "pytorch DDP: skipped (scripts/setup --torch installs torch)"
fi
