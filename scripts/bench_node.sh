#!/usr/bin/env bash
# Issue 11's measurements on one many-CPU node, in one call that keeps to a time budget: the
# node's layout (lscpu: cores x hyperthreads, NUMA), then scripts/bench_scaling.sh entries in
# order of what they decide, each skipped when it would not end within the budget, and one
# combined table. Made for a node lent for minutes (docs/scaling.md, "Measuring 16 ranks"),
# where every entry's results must come back even when the time runs out.
#
#   scripts/bench_node.sh [PLAN ...]      from a checkout, with a bundle (scripts/bundle)
#   ./run scripts/bench_node.sh [PLAN ...] from an unpacked bundle
#
# PLANs (default: pretrain), with F = the node's CPUs, H = F/2, Q = F/4; the entries run in this
# order, except that sum runs right after pretrain's first entry when both are asked for:
#   pretrain  pretraining at 1 and F ranks with the PyTorch DDP peer (train.allreduce auto: on
#             one node, deferred); F ranks with the sum in shared memory (train.allreduce=shm);
#             H ranks; F ranks with poll (the default before auto); F-1 ranks (one CPU left to the
#             system and the ranks' helper threads); 1 and H ranks of 2 BLAS threads; F
#             ranks with the imbalance measured by a barrier; H ranks with shm; 1 and Q ranks of
#             4 threads
#   finetune  fine-tuning at 1 and F ranks with the DDP peer; F ranks with shm; with poll; with shm and
#             ZeRO-1; H ranks of 2 threads; H ranks (one per core on F/2 cores x 2); F ranks with ZeRO-1
#   cached    the cached step at 1 and F ranks with the DDP peer; F ranks with shm
#   sum       the gradient sum alone at F ranks (skesl bench-sum, no training): the reference
#             pretraining and fine-tuning gradients with deferred (Open MPI's own algorithm) and
#             shm, then the pretraining gradient with each of Open MPI's all-reduce algorithms
#             (coll_tuned 1-6), then both with deferred in buckets of 2 and 64 MiB instead of 8,
#             then both with Open MPI's two-copy shared memory (single copy none);
#             about a minute, and left out of the scaling of the other entries' time estimates
#   all       the four
#
# Environment:
#   BUNDLE=<skesl-bundle.tar.xz or an unpacked bundle>  (checkout only; default
#           .node/skesl-bundle.tar.xz). A tarball is unpacked once into $TMPDIR; the checkout's
#           benchmark scripts replace the bundle's copies, so a script fix needs no new bundle
#   BUDGET_S=420  seconds from the start within which every entry must end
#   OUT=<dir>     (default ./node-results) gets at most five files: node.txt (the machine),
#                 results.jsonl (every run, labelled by entry), table.txt, log.txt (this
#                 script's output), logs.tar.gz (every run's stderr, with its step-time table)
#   DRY_RUN=1     print the entries and their estimated seconds, run nothing
#   CPUS=<n>      plan for n CPUs instead of nproc, or the whole CPUs of a lower CPU quota
#                 (with DRY_RUN: see a 16-CPU plan anywhere)
# Other bench_scaling.sh knobs (PER, STEPS, PYTHON, MPIRUN_ARGS, ...) pass through.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
t0=$(date +%s)
BUDGET=${BUDGET_S:-420}
OUT=${OUT:-$PWD/node-results}
if [ -z "${CPUS:-}" ]; then
  # The CPUs this node gives: nproc, or the whole CPUs of a lower CPU quota (a container's limit,
  # docs/scaling.md "A CPU quota"), as the launcher sees them.
  CPUS=$(nproc)
  read -r _ _ _ CORES _ quota _ q < <("$(dirname "$0")/../Cluster/launch.sh" --node-info 2>/dev/null) || true
  if [[ "${q:-}" =~ ^[1-9][0-9]*$ ]] && [ "$q" -lt "$CPUS" ]; then
    echo "bench_node: a CPU quota of $quota CPUs: planned for $q of the $CPUS CPUs"; CPUS=$q
  fi
fi
PLANS=${*:-pretrain}
die() { echo "bench_node: $*" >&2; exit 2; }
[[ "$BUDGET" =~ ^[1-9][0-9]*$ ]] || die "BUDGET_S must be a positive number of seconds, got '$BUDGET'"
[[ "$CPUS" =~ ^[1-9][0-9]*$ ]] || die "CPUS must be a positive integer, got '$CPUS'"
for p in $PLANS; do case $p in pretrain|finetune|cached|sum|all) ;; *) die "unknown plan '$p' (pretrain, finetune, cached, sum, all)" ;; esac; done
wants() { [[ " $PLANS " == *" $1 "* || " $PLANS " == *" all "* ]]; }

F=$CPUS H=$(( CPUS / 2 )) Q=$(( CPUS / 4 ))
SHM="--set train.allreduce=shm" Z1="--set train.shardOptimizer=true" POLL="--set train.allreduce=poll"

# Estimated seconds per skesl run and per DDP world at 16 samples per rank on a 2-3 GHz core
# (measured on 2 cores: pretraining 20 s, fine-tuning 46 s, the cached step's first run with
# BERT's cache pass much longer); the estimates scale by how long the entries so far took.
est_run() { case $1 in pretrain) echo 25 ;; finetune) echo 60 ;; cached) echo 45 ;; sum) echo 50 ;; esac; }
est_ddp() { case $1 in pretrain) echo 30 ;; finetune) echo 60 ;; cached) echo 30 ;; esac; }

entries=()   # "plan|label|task|sizes|VAR=VALUE;VAR=VALUE..." in the order they run
add() { wants "$1" && entries+=("$1|$2|$3|$4|$5") || true; }
add pretrain pretrain           pretrain "1 $F"    "DDP=1"
add sum      sum                sum      "$F"      "DDP=0"
add pretrain pretrain-shm       pretrain "$F"      "DDP=0;EXTRA_SET=$SHM"
add pretrain pretrain-half      pretrain "$H"      "DDP=0"
add pretrain pretrain-poll      pretrain "$F"      "DDP=0;EXTRA_SET=$POLL"
add pretrain pretrain-spare     pretrain "$(( F - 1 ))" "DDP=0"
add pretrain pretrain-2threads  pretrain "1 $H"    "DDP=0;THREADS=2"
add pretrain pretrain-diagnose  pretrain "$F"      "DDP=0;DIAGNOSE=1"
add pretrain pretrain-half-shm  pretrain "$H"      "DDP=0;EXTRA_SET=$SHM"
add pretrain pretrain-4threads  pretrain "1 $Q"    "DDP=0;THREADS=4"
add finetune finetune           finetune "1 $F"    "DDP=1"
add finetune finetune-shm       finetune "$F"      "DDP=0;EXTRA_SET=$SHM"
add finetune finetune-poll      finetune "$F"      "DDP=0;EXTRA_SET=$POLL"
add finetune finetune-shm-zero1 finetune "$F"      "DDP=0;EXTRA_SET=$SHM $Z1"
add finetune finetune-2threads  finetune "$H"      "DDP=0;THREADS=2"
add finetune finetune-half      finetune "$H"      "DDP=0"
add finetune finetune-zero1     finetune "$F"      "DDP=0;EXTRA_SET=$Z1"
add cached   cached             cached   "1 $F"    "DDP=1;CACHED_PER=32;CACHED_STEPS=8"
add cached   cached-shm         cached   "$F"      "DDP=0;EXTRA_SET=$SHM;CACHED_PER=32;CACHED_STEPS=8"

# Sizes that fit this node: no duplicates, none below 1 rank or above its CPUs / threads.
fit() {  # sizes threads
  local n out=""
  for n in $1; do
    [ "$n" -ge 1 ] && [ $(( n * $2 )) -le "$CPUS" ] && [[ " $out " != *" $n "* ]] && out="$out $n"
  done
  echo "${out# }"
}
threads_of() { local t; t=$(tr ';' '\n' <<< "$1" | sed -n 's/^THREADS=//p'); echo "${t:-1}"; }
estimate() {  # task sizes vars
  local n s=0
  for n in $2; do s=$(( s + $(est_run "$1") )); done
  if [[ ";$3;" == *";DDP=1;"* ]]; then for n in $2; do s=$(( s + $(est_ddp "$1") )); done; fi
  echo $(( s + 10 ))
}

if [ "${DRY_RUN:-0}" = 1 ]; then
  echo "bench_node: plan for $CPUS CPUs, budget ${BUDGET}s: ${PLANS}"
  for e in ${entries[@]+"${entries[@]}"}; do
    IFS='|' read -r _ label task sizes vars <<< "$e"
    sizes=$(fit "$sizes" "$(threads_of "$vars")")
    [ -n "$sizes" ] || { echo "  $label: no rank count fits $CPUS CPUs"; continue; }
    printf '  %-20s %-9s ranks %-9s ~%4ss  %s\n' "$label" "$task" "$sizes" "$(estimate "$task" "$sizes" "$vars")" "${vars//;/ }"
  done
  exit 0
fi

# ---- the bundle ----------------------------------------------------------------------------
if [ -f "$here/../MANIFEST" ] && [ -x "$here/../bin/skesl" ]; then
  B=$(cd "$here/.." && pwd)
else
  src=${BUNDLE:-$here/../.node/skesl-bundle.tar.xz}
  if [ -d "$src" ]; then B=$(cd "$src" && pwd)
  elif [ -f "$src" ]; then
    B=${TMPDIR:-/tmp}/skesl-node-bundle-$(cksum < "$src" | cut -d' ' -f1)
    if [ ! -f "$B/MANIFEST" ]; then
      rm -rf "$B.part"; mkdir -p "$B.part"
      tar -C "$B.part" -xJf "$src" || die "could not unpack $src"
      mv "$B.part" "$B"
    fi
    # The checkout's benchmark scripts and launcher, not the bundle's copies (a fix needs no new bundle).
    cp "$here"/bench_scaling.sh "$here"/scaling_table.py "$here"/bench_torch_ddp.py "$here"/bench_torch.py \
       "$here"/torch_reference.py "$B/scripts/"
    mkdir -p "$B/Cluster" && cp "$here/../Cluster/launch.sh" "$B/Cluster/"
  else
    die "no bundle at $src: make one with scripts/bundle --out $src (or set BUNDLE)"
  fi
fi
[ -f "$B/MANIFEST" ] && [ -x "$B/bin/skesl" ] || die "$B is not an unpacked skesl bundle"

mkdir -p "$OUT"
W=$(mktemp -d "${TMPDIR:-/tmp}/skesl-node.XXXXXX")
LOG=$OUT/log.txt RES=$OUT/results.jsonl
: > "$RES"
finish() {
  tar -C "$W" -czf "$OUT/logs.tar.gz" --exclude=store --exclude='*/store' logs 2>/dev/null || true
  if [ -s "$RES" ] && command -v python3 >/dev/null; then
    env -u LD_LIBRARY_PATH python3 "$B/scripts/scaling_table.py" "$RES" --node > "$OUT/table.txt" 2>&1 || true
    cat "$OUT/table.txt"
  fi
  echo "bench_node: $(( $(date +%s) - t0 )) s in all; results in $OUT"
  rm -rf "$W"
}
trap finish EXIT
exec > >(tee -a "$LOG") 2>&1
mkdir -p "$W/logs"

# ---- the node ------------------------------------------------------------------------------
{
  echo "date: $(date -u +%FT%TZ)   host: $(hostname)   kernel: $(uname -r)"
  echo "nproc: $(nproc)   planned for: $CPUS CPUs   load: $(cut -d' ' -f1-3 /proc/loadavg)"
  lscpu 2>&1
  echo; lscpu -e 2>&1 | head -70
  echo; grep -E 'MemTotal|MemAvailable' /proc/meminfo
  echo; df -h /dev/shm "${TMPDIR:-/tmp}" 2>&1
  # A container's CPU limit (a cgroup quota) caps all the ranks' threads together, whatever
  # lscpu shows, and stops them all at each period's end when they want more.
  echo; echo "cgroup: $(tr '\n' ' ' < /proc/self/cgroup)"
  for f in /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu.stat /sys/fs/cgroup/cpuset.cpus.effective \
           /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.stat; do
    if [ -r "$f" ]; then echo "$f: $(tr '\n' ' ' < "$f")"; fi
  done
  echo "launcher: $("$B/Cluster/launch.sh" --mpirun /bin/true --exe /bin/true --dry-run 2>&1 >/dev/null | tr '\n' ' ')"
  echo; "$B/run" info 2>&1
  echo; "$B/run" check 2>&1
  echo; "$B/run" skesl bench --task pretrain --steps 1 --batch 2 2>/dev/null | grep -E '^(machine|blas):' || true
  echo; (env -u LD_LIBRARY_PATH "${PYTHON:-python3}" -c 'import torch, transformers; print("python3: torch", torch.__version__, "transformers", transformers.__version__)' 2>&1 || echo "python3: no torch (no DDP peer)") | tail -1
} > "$OUT/node.txt" 2>&1
grep -E '^(Model name|Thread|Core|Socket|NUMA node)' "$OUT/node.txt" || true
grep -E '^(check|blas|python3|launcher):' "$OUT/node.txt" || true

# What the node does to one CPU's sgemm when all F compute at once (clock speed under an
# all-core AVX load, hyperthread siblings, shared caches): skesl's kernel in one process
# alone, then in F processes placed as the launcher places F ranks. The table's "compute x"
# at F ranks cannot be better than this ratio, whatever the sum does.
core=$(sed -n 's/^blas: OpenBLAS core \([A-Za-z0-9]*\).*/\1/p' "$OUT/node.txt" | head -1)
if [ -n "$core" ]; then
  gflops() { sed -n 's/.*"gflops":\([0-9.]*\).*/\1/p'; }
  alone=$(OPENBLAS_CORETYPE=$core "$B/run" skesl blas-selftest --rate-seconds 2 2>/dev/null | gflops || true)
  # F processes; and where the node has fewer physical cores than F (hyperthreads), one per
  # core too, which the launcher places on distinct cores: the clock and shared caches with
  # every core busy, without the siblings, so the two lines split the node's cost in two.
  loads=$CPUS; [[ "${CORES:-}" =~ ^[1-9][0-9]*$ ]] && [ "$CORES" -lt "$CPUS" ] && loads="$CPUS $CORES"
  for n in $loads; do
    OPENBLAS_CORETYPE=$core timeout 60 "$B/run" "$B/Cluster/launch.sh" --np "$n" -- blas-selftest --rate-seconds 3 \
      2>/dev/null | gflops > "$W/sgemm-load.txt" || true
    if [ -n "$alone" ] && [ -s "$W/sgemm-load.txt" ]; then
      env -u LD_LIBRARY_PATH python3 - "$alone" "$W/sgemm-load.txt" "$core" "$n" "${CORES:-0}" <<'PY' | tee -a "$RES"
import json, sys
rates = sorted(float(x) for x in open(sys.argv[2]) if x.strip())
print(json.dumps({"bench": "sgemm_load", "core": sys.argv[3], "alone_gflops": round(float(sys.argv[1]), 1), "processes": len(rates),
                  "min_gflops": round(rates[0], 1), "median_gflops": round(rates[len(rates) // 2], 1), "max_gflops": round(rates[-1], 1),
                  "one_per_core": int(sys.argv[4]) == int(sys.argv[5])}))
PY
    else
      echo "{\"bench_note\": \"sgemm under load not measured\", \"error\": \"blas-selftest gave no rate (core $core, $n processes)\"}" >> "$RES"
    fi
  done
fi
"$B/run" check >/dev/null 2>&1 || die "the bundle's libraries do not all resolve here (node.txt says which)"

# ---- the entries ---------------------------------------------------------------------------
# The sum alone (skesl bench-sum) at N ranks through the launcher, one job per way of summing
# so that one failing (shm without /dev/shm room) keeps the others; each job ends by the
# deadline (epoch seconds). JSON lines into DIR/results.jsonl, stderr into DIR/sum.err.
run_sum() {  # ranks deadline dir
  local np=$1 deadline=$2 d=$3 spec how alg bucket left rc mca tasks
  mkdir -p "$d"; : > "$d/results.jsonl"
  # way:algorithm:bucket MiB:single copy (empty: Open MPI's own choice, train.bucketMB's default
  # of 8, the run wrapper's choice of single copy); the last job sums both gradients with vader's
  # two-copy path, what a container that forbids process_vm_readv gets
  for spec in deferred::: shm::: deferred:1:: deferred:2:: deferred:3:: deferred:4:: deferred:5:: deferred:6:: \
              deferred::2: deferred::64: deferred:::none; do
    IFS=: read -r how alg bucket copy <<< "$spec"
    left=$(( deadline - $(date +%s) )); [ "$left" -gt 5 ] || { echo "{\"skipped_sum\": \"$spec\", \"why\": \"the budget ran out\"}" >> "$d/results.jsonl"; continue; }
    mca=(); tasks=(--task pretrain --task finetune)
    if [ -n "$alg" ]; then mca=(--mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm "$alg"); tasks=(--task pretrain); fi
    [ -n "$copy" ] && mca+=(--mca btl_vader_single_copy_mechanism "$copy")
    echo "  bench-sum: $np ranks, $how, all-reduce algorithm ${alg:-default}, buckets of ${bucket:-8} MiB${copy:+, single copy $copy}"
    rc=0
    timeout --kill-after=5 "$left" "$B/run" "$B/Cluster/launch.sh" --np "$np" ${mca[@]+"${mca[@]}"} -- \
      bench-sum "${tasks[@]}" --sum "$how" --bucket-mb "${bucket:-8}" --steps 5 --json >> "$d/results.jsonl" 2>> "$d/sum.err" || rc=$?
    [ $rc = 0 ] || echo "{\"failed_sum\": \"$spec\", \"error\": \"exit $rc (logs/sum/sum.err)\"}" >> "$d/results.jsonl"
  done
}

spent_est=0 spent_real=0
for e in ${entries[@]+"${entries[@]}"}; do
  IFS='|' read -r _ label task sizes vars <<< "$e"
  sizes=$(fit "$sizes" "$(threads_of "$vars")")
  [ -n "$sizes" ] || continue
  est=$(estimate "$task" "$sizes" "$vars")
  # Scale by how the entries so far compared with their estimates (never below the estimate).
  scaled=$est; [ "$spent_est" -gt 0 ] && [ "$spent_real" -gt "$spent_est" ] && scaled=$(( est * spent_real / spent_est ))
  now=$(( $(date +%s) - t0 )); left=$(( BUDGET - now - 20 ))
  if [ "$scaled" -gt "$left" ]; then
    echo "{\"skipped_entry\": \"$label\", \"why\": \"about ${scaled} s needed, ${left} s of the budget left\"}" >> "$RES"
    echo "bench_node: skipping $label (about ${scaled} s, ${left} s left)"; continue
  fi
  echo; echo "== $label: $task at ranks $sizes, ${vars//;/ } (about ${scaled} s, ${left} s left) =="
  envs=(); IFS=';' read -r -a envs <<< "$vars"
  s0=$(date +%s) rc=0
  if [ "$task" = sum ]; then
    run_sum "$sizes" "$(( s0 + left ))" "$W/logs/$label" || rc=$?
  else
    timeout --kill-after=10 "$left" env "${envs[@]}" TASKS="$task" SIZES="$sizes" STORE="$W/store" OUT="$W/logs/$label" \
      bash "$B/scripts/bench_scaling.sh" || rc=$?
  fi
  took=$(( $(date +%s) - s0 ))
  # Training entries scale each other's estimates; the sum alone is other work and does not.
  [ "$task" = sum ] || { spent_est=$(( spent_est + est )) spent_real=$(( spent_real + took )); }
  if [ -f "$W/logs/$label/results.jsonl" ]; then
    env -u LD_LIBRARY_PATH python3 -c '
import json, sys
for l in open(sys.argv[1]):
    if l.strip():
        r = json.loads(l); r["label"] = sys.argv[2]; print(json.dumps(r))' "$W/logs/$label/results.jsonl" "$label" >> "$RES"
  fi
  if [ $rc = 124 ] || [ $rc = 137 ]; then
    echo "{\"cut_entry\": \"$label\", \"error\": \"stopped at the budget after $took s\"}" >> "$RES"; break
  fi
  [ $rc = 0 ] || echo "{\"failed_entry\": \"$label\", \"error\": \"bench_scaling.sh exited $rc\"}" >> "$RES"
done
