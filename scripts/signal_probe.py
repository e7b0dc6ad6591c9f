#!/usr/bin/env python3
"""Records the signals a launcher sends to its tasks, for docs/cluster.md ("Signals").

    mpirun -np 2 python3 scripts/signal_probe.py OUTDIR          # then: kill -TERM <mpirun pid>
    srun --mpi=pmix python3 scripts/signal_probe.py OUTDIR       # inside a job script

Each task (named by its Open MPI or Slurm rank) writes OUTDIR/probe-RANK-PID.log, one line
per signal with the wall-clock time, and rewrites OUTDIR/hb-RANK-PID with the time every
10 ms: the last heartbeat is when SIGKILL (which cannot be caught) ended it.
"""
import os
import signal
import sys
import time

out_dir = sys.argv[1]
rank = os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("SLURM_PROCID", "x"))
log = open(f"{out_dir}/probe-{rank}-{os.getpid()}.log", "w", buffering=1)


def record(sig, _frame):
    log.write(f"{time.time():.4f} sig {signal.Signals(sig).name}\n")


for s in (signal.SIGTERM, signal.SIGCONT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT,
          signal.SIGHUP, signal.SIGALRM, signal.SIGQUIT):
    signal.signal(s, record)
log.write(f"{time.time():.4f} start pid {os.getpid()}\n")
while True:
    time.sleep(0.01)
    with open(f"{out_dir}/hb-{rank}-{os.getpid()}", "w") as f:
        f.write(f"{time.time():.4f}")
