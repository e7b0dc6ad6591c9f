#!/usr/bin/env bash
# Launch skesl (or any MPI program) on one or more nodes with Open MPI's mpirun.
# One rank per data-parallel replica; each rank runs its BLAS on --threads cores.
#
#   Cluster/launch.sh --hostfile Cluster/hostfile --per-node 2 --threads 8 -- pretrain -c Configs/pretrain-reference.yaml --store /data/voxceleb --init-bert bert-base-uncased.h5
#
# Options (launcher's own; everything after `--` goes to the program):
#   -n, --np N              total ranks (default: per-node x hosts in the hostfile; with a hostfile
#                           and no --per-node, one rank per slot it lists; without a hostfile,
#                           this node full: one rank per T of its physical cores)
#   -H, --hostfile FILE     Open MPI hostfile: "hostname slots=N" per line
#   --per-node N            ranks per node (maps ppr:N:node)
#   --threads T             threads per rank: OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=T (skesl's train.threads
#                           follows it unless set), and T cores bound per rank
#   --bind core|hwthread|socket|none
#                           CPU binding of each rank (default core; hwthread counts hyperthreads as CPUs,
#                           and core becomes hwthread where ranks x T exceed a node's cores but not its CPUs)
#   --net CIDR              keep MPI traffic (data and control) on this network, TCP only, e.g. 10.0.0.0/24
#   --oversubscribe         allow more ranks than cores (tests, laptops)
#   --kill-grace S          seconds Open MPI waits between the steps of ending the job on SIGTERM/SIGINT
#                           (default 20, $SKESL_KILL_GRACE): ranks get SIGCONT, SIGTERM S s later,
#                           SIGKILL 2S s later, so a rank has S s to write its final checkpoint
#   -x NAME[=VALUE]         pass an environment variable to every rank (repeatable)
#   --mca KEY VALUE         an Open MPI parameter (repeatable)
#   --exe PATH              program to run (default: $SKESL_BIN, the repo's .build/release/skesl, or skesl on PATH)
#   --mpirun PATH           mpirun to use (default: mpirun on PATH)
#   --dry-run               print the mpirun command line and exit
#   --node-info             print what the launcher sees of this node and exit: "cpus N cores N quota Q
#                           usable U" (the CPUs it may use, their physical cores, its control group's
#                           CPU quota in CPUs or "none", and the CPUs to fill: the quota's whole CPUs
#                           where fewer than the CPUs, at least 1)
set -euo pipefail

die() { echo "launch.sh: $*" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"

np="" hostfile="" per_node="" threads=1 bind=core bind_given=0 net="" oversubscribe=0 dry=0 node_info=0 kill_grace="${SKESL_KILL_GRACE:-20}"
exe="${SKESL_BIN:-}" mpirun_bin="${MPIRUN:-mpirun}"
envs=() mcas=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--np) np="${2:?--np needs a number}"; shift 2 ;;
    -H|--hostfile) hostfile="${2:?--hostfile needs a file}"; shift 2 ;;
    --per-node) per_node="${2:?--per-node needs a number}"; shift 2 ;;
    --threads) threads="${2:?--threads needs a number}"; shift 2 ;;
    --bind) bind="${2:?--bind needs core, hwthread, socket or none}"; bind_given=1; shift 2 ;;
    --net) net="${2:?--net needs a CIDR like 10.0.0.0/24}"; shift 2 ;;
    --oversubscribe) oversubscribe=1; shift ;;
    --kill-grace) kill_grace="${2:?--kill-grace needs seconds}"; shift 2 ;;
    -x) envs+=("${2:?-x needs NAME or NAME=VALUE}"); shift 2 ;;
    --mca) [ $# -ge 3 ] || die "--mca needs KEY VALUE"; mcas+=("$2" "$3"); shift 3 ;;
    --exe) exe="${2:?--exe needs a path}"; shift 2 ;;
    --mpirun) mpirun_bin="${2:?--mpirun needs a path}"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --node-info) node_info=1; shift ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1 (program arguments go after --; see --help)" ;;
  esac
done

is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
is_count "$kill_grace" || die "--kill-grace must be a positive number of seconds, got '$kill_grace'"
is_count "$threads" || die "--threads must be a positive integer, got '$threads'"
[ -z "$per_node" ] || is_count "$per_node" || die "--per-node must be a positive integer, got '$per_node'"
[ -z "$np" ] || is_count "$np" || die "--np must be a positive integer, got '$np'"
case "$bind" in core|hwthread|socket|none) ;; *) die "--bind must be core, hwthread, socket or none, got '$bind'" ;; esac
note() { echo "launch.sh: $*" >&2; }
hosts=1
if [ -n "$hostfile" ]; then
  [ -r "$hostfile" ] || die "hostfile $hostfile is not readable"
  hosts=$(grep -cvE '^[[:space:]]*(#|$)' "$hostfile" || true)
  [ "$hosts" -gt 0 ] || die "hostfile $hostfile lists no hosts"
fi

# This node's CPUs (those this launcher may use) and the physical cores behind them, for a
# job on this node alone (a hostfile's nodes may differ from the one launching: their slots
# say what they take). LAUNCH_TEST_NODE_CPUS/_CORES stand in for them in tests.
allowed_cpus() {
  local list part
  list=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status 2>/dev/null || true)
  if [ -z "$list" ]; then seq 0 $(( $(getconf _NPROCESSORS_ONLN) - 1 )); return; fi
  for part in ${list//,/ }; do seq "${part%-*}" "${part#*-}"; done
}
mine=" $(allowed_cpus | tr '\n' ' ')"
node_cpus=${LAUNCH_TEST_NODE_CPUS:-$(echo $mine | wc -w)}
node_cores=${LAUNCH_TEST_NODE_CORES:-$(lscpu -p=CPU,CORE,SOCKET 2>/dev/null | awk -F, -v mine="$mine" '!/^#/ && index(mine, " " $1 " ") { print $2 "," $3 }' | sort -u | wc -l)}
[ "$node_cores" -gt 0 ] 2>/dev/null || node_cores=$node_cpus

# The CPU quota of this launcher's control group and its ancestors (cgroup v2 cpu.max, v1's
# cpu.cfs_quota_us / cpu.cfs_period_us), the lowest in CPUs; nothing where none applies. A
# container's CPU limit caps all its threads together at that many CPUs' worth of time
# whatever its affinity shows, and stops them all when they want more (docs/scaling.md, "A
# CPU quota"). The ranks inherit the launcher's group. LAUNCH_TEST_NODE_QUOTA stands in for it.
quota_cpus() {
  local v path mroot point rel dir q p best=""
  for v in 2 1; do
    path="" mroot="" point=""
    if [ $v = 2 ]; then
      path=$(sed -n 's/^0:://p' /proc/self/cgroup 2>/dev/null || true)
      read -r mroot point < <(awk '/ - cgroup2 / { print $4, $5; exit }' /proc/self/mountinfo 2>/dev/null) || true
    else
      path=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ { print $3; exit }' /proc/self/cgroup 2>/dev/null || true)
      read -r mroot point < <(awk '{ for (i = 7; i < NF; i++) if ($i == "-") { if ($(i+1) == "cgroup" && $(i+3) ~ /(^|,)cpu(,|$)/) { print $4, $5; exit } break } }' /proc/self/mountinfo 2>/dev/null) || true
    fi
    [ -n "$path" ] && [ -n "$point" ] || continue
    # The group's path below the mount's root (a container's own group is often that root).
    rel=${path%/}; [ "$mroot" = / ] || { case "$rel/" in "$mroot"/*) rel=${rel#"$mroot"} ;; *) rel="" ;; esac; }
    while :; do
      dir=$point$rel q="" p=""
      if [ $v = 2 ]; then [ ! -r "$dir/cpu.max" ] || read -r q p < "$dir/cpu.max" || true
      else q=$(cat "$dir/cpu.cfs_quota_us" 2>/dev/null || true); p=$(cat "$dir/cpu.cfs_period_us" 2>/dev/null || true)
      fi
      if [[ "$q" =~ ^[1-9][0-9]*$ && "$p" =~ ^[1-9][0-9]*$ ]]; then
        best=$(awk -v q="$q" -v p="$p" -v b="$best" 'BEGIN { c = q / p; print (b == "" || c < b) ? c : b }')
      fi
      [ -n "$rel" ] || break
      rel=${rel%/*}
    done
    [ -z "$best" ] || { echo "$best"; return; }
  done
}
node_quota=${LAUNCH_TEST_NODE_QUOTA-$(quota_cpus)}
quota_whole=""   # the quota in whole CPUs, where it is below this node's CPUs
if [ -n "$node_quota" ]; then
  quota_whole=$(awk -v q="$node_quota" 'BEGIN { print int(q) }')
  [ "$quota_whole" -lt "$node_cpus" ] || quota_whole=""
fi
if [ "$node_info" = 1 ]; then
  usable=${quota_whole:-$node_cpus}; [ "$usable" -ge 1 ] || usable=1
  echo "cpus $node_cpus cores $node_cores quota ${node_quota:-none} usable $usable"; exit 0
fi

# On this node alone without --np or --per-node: the node full, one rank per T physical cores
# (a hyperthread sibling adds little to an sgemm-bound rank while it halves both ranks' share
# of the core; docs/scaling.md says what a 16-CPU node's measurement would change).
# Under a CPU quota of fewer whole CPUs than that, one rank per T CPUs of the quota: more
# would only take turns at it, all stopped together at each period's end.
if [ -z "$hostfile" ] && [ -z "$np" ] && [ -z "$per_node" ]; then
  if [ -n "$quota_whole" ] && [ "$quota_whole" -lt "$node_cores" ]; then
    per_node=$(( quota_whole / threads > 0 ? quota_whole / threads : 1 ))
    note "$per_node rank(s) of $threads thread(s): this node's control group may use $node_quota CPUs' time (a CPU quota) of its $node_cpus CPUs; --np or --per-node to choose"
  else
    per_node=$(( node_cores / threads > 0 ? node_cores / threads : 1 ))
    note "$per_node rank(s) of $threads thread(s): this node's $node_cores physical cores ($node_cpus CPUs) full; --np or --per-node to choose"
  fi
fi
if [ -z "$np" ] && [ -n "$per_node" ]; then np=$(( hosts * per_node )); fi
if [ -z "$hostfile" ] && [ -n "$node_quota" ] && [ -n "$np" ] \
   && awk -v n=$(( np * threads )) -v q="$node_quota" 'BEGIN { exit !(n > q) }'; then
  note "warning: $np rank(s) x $threads thread(s) want more than this node's CPU quota of $node_quota CPUs: the kernel will stop all of them whenever they exceed it (docs/scaling.md, \"A CPU quota\")"
fi
[ -n "$np" ] || note "one rank per slot of $hostfile (--np or --per-node to choose)"
# More ranks x threads on this node than cores but not than CPUs: Open MPI would refuse core
# binding (too few slots), so count hyperthreads as the CPUs and bind each rank to T of them.
if [ -z "$hostfile" ] && [ "$bind" = core ] && [ "$bind_given" = 0 ] \
   && [ $(( np * threads )) -gt "$node_cores" ] && [ $(( np * threads )) -le "$node_cpus" ]; then
  bind=hwthread
  note "$np rank(s) x $threads thread(s) exceed this node's $node_cores cores: bound to hardware threads (of its $node_cpus CPUs)"
fi

if [ -z "$exe" ]; then
  if [ -x "$here/../.build/release/skesl" ]; then exe="$here/../.build/release/skesl"
  elif command -v skesl >/dev/null; then exe="$(command -v skesl)"
  else die "no skesl executable: build it (swift build -c release), put it on PATH, or pass --exe / SKESL_BIN"
  fi
fi
[ -x "$exe" ] || command -v "$exe" >/dev/null || die "program $exe is not executable"
command -v "$mpirun_bin" >/dev/null || die "$mpirun_bin not found: install Open MPI (openmpi-bin)"

cmd=("$mpirun_bin"); [ -n "$np" ] && cmd+=(-np "$np")
[ -n "$hostfile" ] && cmd+=(--hostfile "$hostfile")
# Placement: N ranks per node, each owning T cores (PE=T) when bound.
map="slot"; [ -n "$per_node" ] && map="ppr:$per_node:node"
if [ "$bind" != none ] && [ "$threads" -gt 1 ]; then map="$map:PE=$threads"; fi
[ "$bind" = hwthread ] && cmd+=(--use-hwthread-cpus)
cmd+=(--map-by "$map" --bind-to "$bind")
[ "$oversubscribe" = 1 ] && cmd+=(--oversubscribe)
[ "$(id -u)" = 0 ] && cmd+=(--allow-run-as-root)
if [ -n "$net" ]; then
  cmd+=(--mca btl tcp,self --mca btl_tcp_if_include "$net" --mca oob_tcp_if_include "$net")
fi
# Open MPI 4.1 ends a job on SIGTERM/SIGINT (and when a rank fails) in three steps, each
# odls_base_sigkill_timeout seconds apart: SIGCONT, SIGTERM, SIGKILL (measured in
# docs/cluster.md, "Signals"). Its default of 1 s kills a rank 1 s after its SIGTERM, too
# soon to write a checkpoint of any size. An explicit --mca odls_base_sigkill_timeout wins.
own_timeout=0
for ((i = 0; i < ${#mcas[@]}; i += 2)); do [ "${mcas[i]}" = odls_base_sigkill_timeout ] && own_timeout=1; done
[ "$own_timeout" = 1 ] || cmd+=(--mca odls_base_sigkill_timeout "$kill_grace")
for ((i = 0; i < ${#mcas[@]}; i += 2)); do cmd+=(--mca "${mcas[i]}" "${mcas[i + 1]}"); done
# Threads per rank for OpenBLAS (and anything OpenMP); the rest of the environment
# is exported by name so remote ranks see the launcher's values.
fwd=("OPENBLAS_NUM_THREADS=$threads" "OMP_NUM_THREADS=$threads")
for v in $(compgen -e | grep -E '^SKESL_' || true); do fwd+=("$v"); done
# A user's OpenBLAS core type (and cache size) holds on every node, not only where mpirun runs.
for v in OPENBLAS_CORETYPE OPENBLAS_L2_SIZE; do if [ -n "${!v:-}" ]; then fwd+=("$v"); fi; done
for e in ${envs[@]+"${envs[@]}"}; do fwd+=("$e"); done
# Open MPI refuses -x where the environment already forwards variables through
# mca_base_env_list (the bundle's `run` wrapper does, for its library paths): then set the
# values here and add their names to that list instead.
pre=()
if [ -n "${OMPI_MCA_mca_base_env_list:-}" ]; then
  list=$OMPI_MCA_mca_base_env_list
  for e in "${fwd[@]}"; do
    name=${e%%=*}
    [[ "$e" == *=* ]] && pre+=("$e")
    case ";$list;" in *";$name;"*) ;; *) list="$list;$name" ;; esac
  done
  pre+=("OMPI_MCA_mca_base_env_list=$list")
else
  for e in "${fwd[@]}"; do cmd+=(-x "$e"); done
fi
cmd+=("$exe" "$@")
[ ${#pre[@]} -gt 0 ] && cmd=(env "${pre[@]}" "${cmd[@]}")

if [ "$dry" = 1 ]; then printf '%q ' "${cmd[@]}"; echo; exit 0; fi
exec "${cmd[@]}"
