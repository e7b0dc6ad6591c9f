#!/usr/bin/env bash
# Runs an MPI program as a 2-host job on this one machine: two network
# namespaces joined by a veth pair (198.18.0.1 and 198.18.0.2, the range set
# aside for network tests), mpirun started inside the first through
# Cluster/launch.sh, remote daemons started by an rsh "agent" that maps an
# address to its namespace. MPI traffic is TCP over the veth only.
#
#   scripts/netns-mpi-run.sh PROGRAM [ARGS...]
#
# Needs root (CAP_NET_ADMIN) and iproute2; exits 77 (skip) when namespaces
# cannot be created. Namespaces carry this script's PID and are removed on any exit.
# SKESL_NETNS_PER_HOST=N: up to N ranks in each namespace (default 1; above 1 they are
# oversubscribed and unbound: a correctness check of two-level code, not a measurement).
# SKESL_NETNS_NP=K: K ranks in all (default 2N; fewer leaves the second host short).
# Each namespace gets a host name of its own (a UTS namespace): Open MPI 4.1's
# MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) crashes when two "hosts" share one name.
# SKESL_KILL_GRACE=S: launch.sh's --kill-grace (default 20 s: the time ranks get to write
# a checkpoint on SIGTERM). Open MPI waits it twice when a rank fails (SIGCONT, SIGTERM,
# SIGKILL to the survivors); tests of a failing rank that checkpoint nothing set 1.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 PROGRAM [ARGS...]" >&2; exit 2; }
repo="$(cd "$(dirname "$0")/.." && pwd)"
id=$$
nsA="skesl-$id-a" nsB="skesl-$id-b"
vA="skv${id}a" vB="skv${id}b"   # interface names: at most 15 characters
addrA=198.18.0.1 addrB=198.18.0.2 net=198.18.0.0/24
work="$(mktemp -d "${TMPDIR:-/tmp}/skesl-netns-$id.XXXXXX")"
child=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$child" ] && kill "$child" 2>/dev/null || true
  for ns in "$nsA" "$nsB"; do
    if ip netns list 2>/dev/null | grep -qw "$ns"; then
      # Only processes this run started live in these namespaces.
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

skip() { echo "netns-mpi-run: SKIP: $*" >&2; exit 77; }
command -v ip >/dev/null || skip "iproute2 (ip) is not installed"
ip netns add "$nsA" 2>"$work/err" || skip "cannot create network namespaces: $(cat "$work/err") (needs root or CAP_NET_ADMIN)"
ip netns add "$nsB"
ip link add "$vA" netns "$nsA" type veth peer name "$vB" netns "$nsB" 2>"$work/err" \
  || skip "cannot create a veth pair: $(cat "$work/err")"
ip -n "$nsA" addr add "$addrA/24" dev "$vA"
ip -n "$nsB" addr add "$addrB/24" dev "$vB"
for ns in "$nsA" "$nsB"; do ip -n "$ns" link set lo up; done
ip -n "$nsA" link set "$vA" up
ip -n "$nsB" link set "$vB" up

per="${SKESL_NETNS_PER_HOST:-1}"
case "$per" in ''|*[!0-9]*|0) echo "netns-mpi-run: SKESL_NETNS_PER_HOST must be a positive integer, got '$per'" >&2; exit 2 ;; esac
extra=()
[ "$per" -gt 1 ] && extra=(--oversubscribe --bind none)
printf '%s slots=%s\n%s slots=%s\n' "$addrA" "$per" "$addrB" "$per" >"$work/hosts"
# Open MPI calls: AGENT HOST COMMAND... ; run COMMAND in HOST's namespace.
cat >"$work/agent.sh" <<AGENT
#!/bin/sh
host="\$1"; shift
case "\$host" in
  *$addrA) ns=$nsA ;;
  *$addrB) ns=$nsB ;;
  *) echo "agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" unshare --uts sh -c "hostname \$ns; \$*"
AGENT
chmod +x "$work/agent.sh"

ip netns exec "$nsA" "$repo/Cluster/launch.sh" --hostfile "$work/hosts" --np "${SKESL_NETNS_NP:-$((2 * per))}" --per-node "$per" "${extra[@]}" --net "$net" \
  --kill-grace "${SKESL_KILL_GRACE:-20}" \
  --mca plm_rsh_agent "$work/agent.sh" --exe "$1" -- "${@:2}" &
child=$!
rc=0
wait "$child" || rc=$?
child=""
exit "$rc"
