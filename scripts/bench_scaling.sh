#!/usr/bin/env bash
# Weak scaling of skesl at 1, 2, 4, 8, 16 MPI ranks (capped at this machine's CPUs unless told
# otherwise) for the pretraining step, the fine-tuning step and the cached pretraining step, at
# the reference shapes (BERT-base, L 39, audio 400x33, video 55x709), one OpenBLAS thread per
# rank, bound to cores; then PyTorch DDP (gloo) on the same shapes in the same run. Prints one
# table: samples/s, efficiency against 1 rank, and from skesl's step_times record the median
# rank's share of the step spent waiting for the slowest rank and in the all-reduce proper.
#
#   scripts/bench_scaling.sh                     from a checkout (release build, system Open MPI)
#   ./run scripts/bench_scaling.sh               from an unpacked bundle (scripts/bundle)
#
# Knobs (environment):
#   SIZES="1 2 4 8 16"  MAX_RANKS=<CPUs>  TASKS="pretrain finetune cached"
#   PER=16 (samples per rank per step; the cached step: CACHED_PER=64)  STEPS=6  CACHED_STEPS=12
#   DIAGNOSE=0 (1: train.diagnoseImbalance, the imbalance measured with a barrier)
#   THREADS=1 (hybrid ranks x threads: T OpenBLAS threads per rank, each rank bound to T cores;
#              ranks are capped at CPUs/T, efficiency is against 1 rank of T threads; compare
#              e.g. SIZES=16 with THREADS=2 SIZES=8 for the samples/s of the whole node)
#   DDP=1 (0: no PyTorch peer)  PYTHON=<python with torch>  EXTRA_SET=""
#   MPIRUN_ARGS (default: none, the ranks are started by Cluster/launch.sh --np N --threads T,
#              so they are placed as the launcher places them: each bound to its T cores, or to
#              T hardware threads where ranks x T exceed the physical cores but not the CPUs;
#              set, mpirun is called directly with these arguments instead)
#   OUT=<directory for results.jsonl and the runs' logs> (default: a temporary one, removed)
#   STORE=<directory> (keep the synthetic store there and reuse it while it holds enough samples:
#              saves the synthesis and, for the cached step, BERT's cache pass in later calls)
#   SKESL=<skesl binary> (checkout only: skip the release build)
# Ranks beyond the CPU count are skipped: oversubscribed figures are not scaling figures.
# MAX_RANKS=N raises the cap (for correctness runs only).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -f "$here/../MANIFEST" ] && [ -x "$here/../bin/skesl" ]; then
  # Inside a bundle: `run` has set PATH and the libraries up (or do it now).
  [ -n "${OPAL_PREFIX:-}" ] || exec "$here/../run" bash "$0" "$@"
  SKESL=$here/../bin/skesl; MPIRUN=$here/../usr/bin/mpirun; LEX=$here/../share/vader_lexicon.txt
  LAUNCH=$here/../Cluster/launch.sh
  PY=${PYTHON:-python3}
  py() { env -u LD_LIBRARY_PATH "$PY" "$@"; }   # the machine's Python with its own libraries, not the bundle's
else
  cd "$here/.."
  if [ -z "${SKESL:-}" ]; then
    swift build -c release --product skesl 2>&1 | tail -1
    SKESL=$(swift build -c release --show-bin-path)/skesl
  fi
  MPIRUN=mpirun; LEX=auto; LAUNCH=$here/../Cluster/launch.sh
  PY=${PYTHON:-.venv/bin/python}
  py() { "$PY" "$@"; }
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
T=${THREADS:-1}
[[ "$T" =~ ^[1-9][0-9]*$ ]] || { echo "bench_scaling: THREADS must be a positive integer, got '$T'"; exit 2; }
export OPENBLAS_NUM_THREADS=$T
CPUS=$(nproc)
# Under a CPU quota (a container's limit) of fewer whole CPUs than that, those are the CPUs:
# more ranks would only take turns at the quota (docs/scaling.md, "A CPU quota").
read -r _ _ _ _ _ quota _ q < <("$LAUNCH" --node-info 2>/dev/null) || true
if [[ "${q:-}" =~ ^[1-9][0-9]*$ ]] && [ "$q" -lt "$CPUS" ]; then
  echo "bench_scaling: a CPU quota of $quota CPUs: ranks up to $q of this node's $CPUS CPUs"; CPUS=$q
fi
SIZES=${SIZES:-1 2 4 8 16}; MAX=${MAX_RANKS:-$(( CPUS / T > 0 ? CPUS / T : 1 ))}; TASKS=${TASKS:-pretrain finetune cached}
PER=${PER:-16}; STEPS=${STEPS:-6}; CPER=${CACHED_PER:-64}; CSTEPS=${CACHED_STEPS:-12}
W=$(mktemp -d /tmp/skesl-scaling.XXXXXX)
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; trap 'cp -r "$W"/*.err "$W"/*.out "$W"/results.jsonl "$OUT"/ 2>/dev/null; rm -rf "$W"' EXIT
else trap 'rm -rf "$W"' EXIT; fi
RES=$W/results.jsonl; : > "$RES"
sizes=(); for n in $SIZES; do if [ "$n" -le "$MAX" ]; then sizes+=("$n"); else echo "{\"skipped_ranks\": $n, \"why\": \"more ranks than the $MAX allowed ($CPUS CPUs / $T threads per rank, or MAX_RANKS)\"}" >> "$RES"; fi; done
NMAX=1; for n in "${sizes[@]}"; do [ "$n" -gt "$NMAX" ] && NMAX=$n; done
over=(); [ $(( NMAX * T )) -gt "$CPUS" ] && over=(--oversubscribe)
[ -x "$LAUNCH" ] || { echo "bench_scaling: $LAUNCH is missing (a bundle made before it carried Cluster/launch.sh: make a new one)"; exit 1; }
CORES=$(lscpu -p=CORE,SOCKET 2>/dev/null | grep -v '^#' | sort -u | wc -l); [ "$CORES" -gt 0 ] || CORES=$CPUS
# The ranks start as users start them, through the launcher: what wins here is its default.
launcher() {  # ranks -> LCMD: the command before skesl's own arguments
  if [ -n "${MPIRUN_ARGS:-}" ]; then
    # shellcheck disable=SC2206
    LCMD=("$MPIRUN" -np "$1" ${over[@]+"${over[@]}"} $MPIRUN_ARGS "$SKESL")
  else
    LCMD=("$LAUNCH" --mpirun "$MPIRUN" --exe "$SKESL" --np "$1" --threads "$T" ${over[@]+"${over[@]}"} --)
  fi
}
placement() {  # ranks -> mpirun's placement arguments, as the launcher gives them
  if [ -n "${MPIRUN_ARGS:-}" ]; then echo "$MPIRUN_ARGS"; return; fi
  launcher "$1"
  "${LCMD[@]:0:${#LCMD[@]}-1}" --dry-run 2>/dev/null | grep -oE -- '--use-hwthread-cpus|--map-by [^ ]+|--bind-to [^ ]+' \
    | tr '\n' ' ' | sed 's/ $//'
}

echo "bench_scaling: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $CPUS CPUs on $CORES cores; ranks ${sizes[*]}; tasks $TASKS; $T BLAS thread(s) per rank"
"$SKESL" bench --task pretrain --steps 1 --batch 2 2>/dev/null | grep -E '^(machine|blas):' || true

# One labeled store for every run: fine-tuning trains on its 70% train split.
need=$(( PER * NMAX * (STEPS + 2) )); cneed=$(( CPER * NMAX * (CSTEPS + 2) ))
[[ " $TASKS " == *" cached "* ]] && [ $cneed -gt $need ] && need=$cneed
SAMPLES=$(( (need * 10 + 6) / 7 ))
STORE=${STORE:-$W/store}
if [ "$(cat "$STORE/.bench-samples" 2>/dev/null || echo 0)" -lt "$SAMPLES" ]; then
  rm -rf "$STORE"
  "$SKESL" synth --out "$STORE" --samples $SAMPLES --labeled --seed 1 >/dev/null
  echo "$SAMPLES" > "$STORE/.bench-samples"
fi
"$SKESL" synth --write-vocab "$W/vocab.txt" --out "$W/unused" --samples 1 >/dev/null 2>&1 || true
[ -s "$W/vocab.txt" ] || { echo "bench_scaling: skesl synth --write-vocab wrote nothing"; exit 1; }
echo "store: $(cat "$STORE/.bench-samples") samples ($(du -sh "$STORE" | cut -f1)), $SAMPLES needed"

run() {  # task ranks
  local task=$1 np=$2 per=$PER steps=$STEPS cmd=$1
  local extra=(--set data.tokenizer="$W/vocab.txt" --set train.epochs=100 --set logEverySeconds=0.001
               --set data.lexicon="$LEX" --store "$STORE" --resume none --set train.threads=$T ${EXTRA_SET:-})
  case $task in
    finetune) extra+=(--set model.freezeBert=false --set train.optimizer.groupLR.bert=5.0e-6) ;;
    cached) cmd=pretrain; per=$CPER; steps=$CSTEPS; extra+=(--set data.bertCache=true) ;;
  esac
  [ "${DIAGNOSE:-0}" = 1 ] && extra+=(--set train.diagnoseImbalance=true)
  extra+=(--set train.globalBatch=$(( per * np )) --set train.maxSteps=$steps)
  local rd=$W/$task-$np place; place=$(placement "$np"); launcher "$np"
  if ! "${LCMD[@]}" "$cmd" "${extra[@]}" --run-dir "$rd" > "$rd.out" 2> "$rd.err"; then
    echo "{\"skesl\": \"$task\", \"ranks\": $np, \"error\": \"failed, see $task-$np.err\"}" >> "$RES"
    echo "  $task $np ranks FAILED:"; tail -5 "$rd.err" | sed 's/^/    /'; return
  fi
  py - "$rd/metrics.jsonl" "$task" "$np" "$per" "$T" "$place" <<'PY' >> "$RES"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
train = [r for r in recs if r["kind"] == "train"]
timed = train[1:] if len(train) > 1 else train          # the first step warms up
samples = sum(r["samples"] for r in timed); secs = sum(r["samples"] / r["samples_per_s"] for r in timed)
st = [r for r in recs if r["kind"] == "step_times"][-1]
start = [r for r in recs if r["kind"] == "run_start"][-1]
med = st["step_s"]["median"]
out = {"skesl": sys.argv[2], "ranks": int(sys.argv[3]), "per_rank_batch": int(sys.argv[4]), "threads_per_rank": int(sys.argv[5]),
       "samples_per_s": round(samples / secs, 3), "step_ms_median_rank": round(1e3 * med, 1),
       "imbalance_share": round(st["parts"]["imbalance"]["median"] / med, 4),
       "allreduce_share": round(st["parts"]["allreduce"]["median"] / med, 4),
       "allreduce_share_max": round(st["parts"]["allreduce"]["max"] / med, 4), "imbalance_from": st["imbalance"],
       "compute_ms_median_rank": round(1e3 * (st["parts"]["forward"]["median"] + st["parts"]["backward"]["median"]), 1),
       "blas": start.get("blas", {}).get("core"), "sgemm_gflops": start.get("blas", {}).get("sgemm_gflops"),
       "placement": sys.argv[6].strip(),
       # whether the ranks kept their CPUs while computing (step_times' cpu; absent from older skesl)
       **({"compute_on_cpu_min": round(st["cpu"]["compute_on_cpu"]["min"], 4),
           "compute_on_cpu_min_rank": min(range(len(st["cpu"]["ranks"]["compute_on_cpu"])), key=lambda i: st["cpu"]["ranks"]["compute_on_cpu"][i]),
           "compute_on_cpu_median": round(st["cpu"]["compute_on_cpu"]["median"], 4),
           "preemptions_max": round(st["cpu"]["preemptions"]["max"], 2),
           "other_threads_compute_ms_median": round(1e3 * st["cpu"]["other_threads_s"]["median"], 2)} if "cpu" in st else {}),
       # time the ranks' control group was held back by a CPU quota (absent where none applies)
       **({"throttled_ms_max": round(1e3 * st["cpu"]["throttled_s"]["max"], 2),
           "cpu_quota": min(r["cpu_quota"]["cpus"] for r in start["placement"]["ranks"] if r.get("cpu_quota"))}
          if st.get("cpu", {}).get("throttled_s") else {}),
       "gradient_sum": start.get("gradient_sum"),   # the sum that ran (train.allreduce resolved)
       "diagnosis": st.get("diagnosis"),             # what the run lost its scaling to, in one line
       # where the ranks ran, as they saw it (run_start's placement: hyperthread siblings, shared CPUs)
       "ranks_sharing_a_core": len({r for pair in start.get("placement", {}).get("shared_cores", []) for r in pair}),
       "ranks_spanning_numa": len(start.get("placement", {}).get("spanning_numa") or []),
       "placement_seen": start.get("placement", {}).get("summary"),
       # the host as rank 0 saw it: CPUs and physical cores (fewer cores than CPUs: hyperthreads)
       **{k: start["placement"]["ranks"][0][k] for k in ("host_cpus", "host_cores")
          if start.get("placement", {}).get("ranks") and k in start["placement"]["ranks"][0]}}
print(json.dumps(out))
PY
  tail -1 "$RES"
}
for task in $TASKS; do for np in "${sizes[@]}"; do run "$task" "$np"; done; done

if [ "${DDP:-1}" = 1 ] && py -c "import torch, transformers" 2>/dev/null; then
  worlds=$(IFS=,; echo "${sizes[*]}")
  for task in $TASKS; do
    per=$PER; steps=4; [ "$task" = cached ] && { per=$CPER; steps=10; }
    OMP_NUM_THREADS=$T MKL_NUM_THREADS=$T py "$here/bench_torch_ddp.py" --task "$task" --worlds "$worlds" --threads "$T" \
      --per-rank "$per" --steps "$steps" 2> "$W/ddp-$task.err" | grep '"bench"' >> "$RES" \
      || { echo "pytorch DDP $task failed:"; tail -5 "$W/ddp-$task.err"; }
  done
else
  echo "pytorch DDP: skipped (DDP=0, or $PY lacks torch and transformers: scripts/setup --torch)"
fi

py "$here/scaling_table.py" "$RES"
