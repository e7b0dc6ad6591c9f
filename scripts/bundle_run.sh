#!/usr/bin/env bash
# `run`: the entry point of a skesl bundle (made by scripts/bundle). Runs a command with the
# bundle's skesl, Open MPI, HDF5 and OpenBLAS, from wherever the bundle was unpacked, on a
# Linux x86-64 machine that has none of them installed (glibc >= the bundle's floor).
#
#   ./run skesl pretrain -c config.yaml --store STORE --run-dir RUN
#   ./run mpirun -np 16 --bind-to core skesl pretrain ...
#   ./run info            what the bundle holds and how it would run here
#   ./run check           every bundled program and library resolves inside the bundle
#
# mpirun and skesl are the bundle's. Open MPI is relocated with OPAL_PREFIX, its PMIx with the
# PMIX_* directory variables. On one node without ssh, mpirun launches locally
# (OMPI_MCA_plm=isolated). Shared-memory transfers use single copy (CMA) only where the
# kernel allows process_vm_readv. Any OMPI_MCA_*/OPENBLAS_* the user set is kept.
set -euo pipefail
B="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
L=$B/usr/lib/x86_64-linux-gnu
P=$L/pmix2
die() { echo "run: $*" >&2; exit 2; }
[ -f "$B/MANIFEST" ] && [ -x "$B/bin/skesl" ] || die "$B is not an unpacked skesl bundle (no MANIFEST or bin/skesl)"

# glibc: the one thing the bundle does not carry.
need=$(cat "$B/GLIBC_MIN" 2>/dev/null || echo 2.35)
have=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
if [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
  die "this machine has glibc $have; the bundle needs $need or newer (Ubuntu 22.04, Debian 12, RHEL 9 and later)"
fi

# A launcher's variables from an enclosing job (e.g. a test that is itself an MPI process)
# would make mpirun think it runs inside that job; the bundle's Open MPI gets its own.
for v in $(compgen -e | grep -E '^(OPAL_PREFIX|OPAL_SYSCONFDIR|PMIX_(PREFIX|EXEC_PREFIX|LIBDIR|DATAROOTDIR|DATADIR|SYSCONFDIR))$' || true); do unset "$v"; done
export OPAL_PREFIX=$B/usr OPAL_SYSCONFDIR=$B/etc/openmpi
export PMIX_PREFIX=$P PMIX_EXEC_PREFIX=$P PMIX_LIBDIR=$P/lib PMIX_DATAROOTDIR=$P/share PMIX_DATADIR=$P/share PMIX_SYSCONFDIR=$P/share
export HWLOC_PLUGINS_PATH=$L/hwloc
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# No ssh/rsh: one node, launch locally.
if [ -z "${OMPI_MCA_plm:-}" ] && ! command -v ssh >/dev/null && ! command -v rsh >/dev/null; then export OMPI_MCA_plm=isolated; fi
# Single-copy shared-memory transfers (CMA) need process_vm_readv; some containers refuse it.
if [ -z "${OMPI_MCA_btl_vader_single_copy_mechanism:-}" ]; then
  if ! "$B/bin/skesl-cma-probe" >/dev/null 2>&1; then export OMPI_MCA_btl_vader_single_copy_mechanism=none; fi
fi
if [ -z "${OMPI_MCA_btl_vader_backing_directory:-}" ]; then
  shm=$(df -Pm /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')
  if [ -z "$shm" ] || [ "$shm" -lt 1024 ]; then export OMPI_MCA_btl_vader_backing_directory=${TMPDIR:-/tmp}; fi
fi
LDP=$L:$P/lib:$L/openmpi/lib
# The bundled libstdc++ (GCC 12) needs glibc 2.36: the system's is used where it is new enough.
sys_stdcxx=""
for c in /usr/lib/x86_64-linux-gnu/libstdc++.so.6 /lib/x86_64-linux-gnu/libstdc++.so.6 /usr/lib64/libstdc++.so.6 /lib64/libstdc++.so.6; do
  if [ -e "$c" ] && grep -qa "$(cat "$B/GLIBCXX_NEEDED" 2>/dev/null || echo GLIBCXX_3.4.30)" "$c"; then sys_stdcxx=$c; break; fi
done
[ -z "$sys_stdcxx" ] && LDP=$LDP:$L/gcc
export LD_LIBRARY_PATH=$LDP${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=$B/bin:$B/usr/bin:$PATH
# Remote ranks (a hostfile, ssh) need the same variables: mpirun forwards them.
export OMPI_MCA_mca_base_env_list="${OMPI_MCA_mca_base_env_list:+$OMPI_MCA_mca_base_env_list;}OPAL_PREFIX;OPAL_SYSCONFDIR;PMIX_PREFIX;PMIX_EXEC_PREFIX;PMIX_LIBDIR;PMIX_DATAROOTDIR;PMIX_DATADIR;PMIX_SYSCONFDIR;LD_LIBRARY_PATH;PATH;OPENBLAS_NUM_THREADS${OPENBLAS_CORETYPE:+;OPENBLAS_CORETYPE}"

case "${1:-info}" in
  info)
    echo "bundle: $B ($(cat "$B/VERSION" 2>/dev/null || echo unknown version))"
    echo "glibc: ${have:-unknown} (needs $need)   libstdc++: ${sys_stdcxx:-bundled}"
    echo "mpirun: $(command -v mpirun)  $(mpirun --version 2>&1 | head -1)"
    echo "single copy: ${OMPI_MCA_btl_vader_single_copy_mechanism:-cma}   plm: ${OMPI_MCA_plm:-default (ssh for other hosts)}"
    echo "OpenBLAS: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset (skesl checks the core type OpenBLAS picks at start-up)}"
    exit 0 ;;
  check)
    bad=0
    while IFS= read -r f; do
      [ "$(head -c4 "$f" | tail -c3)" = ELF ] || continue
      if ldd "$f" 2>/dev/null | grep -q 'not found'; then echo "UNRESOLVED in $f:"; ldd "$f" | grep 'not found'; bad=1; fi
      outside=$(ldd "$f" 2>/dev/null | awk '$3 ~ /^\// {print $3}' | grep -v "^$B/" \
                | grep -vE '/(ld-linux-x86-64|libc|libm|libmvec|libpthread|libdl|librt|libresolv|libutil|libanl|libnsl|libnss_[a-z]*|libgcc_s)\.so' \
                | { if [ -n "$sys_stdcxx" ]; then grep -v '/libstdc++\.so\.6$'; else cat; fi; } || true)
      if [ -n "$outside" ]; then echo "OUTSIDE the bundle, needed by $f:"; echo "$outside" | sed 's/^/  /'; bad=1; fi
    done < <(find "$B" -type f \( -name '*.so*' -o -path '*/bin/*' \) -not -path "$L/gcc/*")
    [ $bad = 0 ] && echo "check: every bundled program and library resolves inside the bundle (glibc and libstdc++ aside)"
    exit $bad ;;
esac
exec "$@"
