"""The weak-scaling table of scripts/bench_scaling.sh and scripts/bench_node.sh, from their
results.jsonl lines (skesl's runs, PyTorch DDP's, skips and failures).

Efficiency is samples/s(N) / (N x samples/s(1)) against one rank of the same step, threads per
rank and per-rank batch (from the same entry when it has one, else from any entry of the same
file). "compute x" is the median rank's forward + backward time against that one rank's: the
part of the loss of efficiency that is the node (clock speed under load, shared caches and
memory bandwidth, hyperthread siblings), which no change to communication can win back.
"imbalance" and "all-reduce" are the median rank's shares of its step (step_times record).
"on CPU" is the share of forward + backward during which the rank that held its CPU least had
it (step_times' cpu.compute_on_cpu, min over ranks): below 100% a rank was preempted (by its
own loader or communication thread, another rank, the system); at 100% with compute x above 1
the CPU itself computed slower (a busy hyperthread sibling, memory bandwidth, clock speed).
A run whose ranks sat in a control group with a CPU quota gets a line with the quota and the
most time per step the kernel held the group back for exceeding it. Lines of `skesl bench-sum`
(bench_node's `sum` plan) give the gradient sum alone, per gradient and way of summing.

With --node, the end lists every placement that used all the node's CPUs (ranks x threads =
CPUs), and where the runs saw fewer physical cores than CPUs (host_cores, hyperthreads) every
one that used each core once (ranks x threads = cores), per step, fastest first: the
launcher's default placement is the winner there.

Run: python3 scripts/scaling_table.py results.jsonl [--node]
"""
import json
import sys

DDP_NAME = {"pretrain": "ddp_pretrain_reference", "finetune": "ddp_finetune_reference", "cached": "ddp_pretrain_cached"}


def load(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"scaling_table: {path} line {n} is not JSON ({e}); the run that wrote it was cut off?")
    return rows


def key(r):
    return (r["skesl"], r.get("threads_per_rank", 1), r["per_rank_batch"])


def sum_variant(r):
    """What a bench-sum job set apart from Open MPI's and the trainer's defaults, e.g. " (coll_tuned 4)"."""
    return "".join((
        "" if r.get("algorithm", "default") == "default" else " (coll_tuned %s)" % r["algorithm"],
        "" if r.get("bucket_mb", 8) == 8 else " (buckets %g MiB)" % r["bucket_mb"],
        "" if r.get("single_copy", "default") == "default" else " (single copy %s)" % r["single_copy"]))


def table(rows, node=False):
    mine = [r for r in rows if "skesl" in r and "samples_per_s" in r]
    labels = []
    for r in rows:
        if r.get("label", "") not in labels:
            labels.append(r.get("label", ""))
    # One rank of each (step, threads, batch): the entry's own first, else the first anywhere.
    base = {}
    for r in mine:
        if r["ranks"] == 1:
            base.setdefault((r.get("label", ""),) + key(r), r)
            base.setdefault(("*",) + key(r), r)
    labelled = any(labels)
    out = []
    head = "%-9s %s%5s %7s | %10s %5s %9s %6s %9s %10s | %10s %5s %9s" % (
        "step", "%-20s " % "entry" if labelled else "", "ranks", "batch/r", "skesl s/s", "eff", "compute x", "on CPU",
        "imbalance", "all-reduce", "DDP s/s", "eff", "skesl/DDP")
    out += ["", head, "-" * len(head)]
    for task in ("pretrain", "finetune", "cached"):
        for label in labels:
            ours = {(r["ranks"], r.get("threads_per_rank", 1)): r for r in mine if r["skesl"] == task and r.get("label", "") == label}
            ddp = {(r["world"], r.get("threads_per_rank", 1)): r for r in rows
                   if r.get("bench") == DDP_NAME[task] and r.get("label", "") == label}
            for n, t in sorted(set(ours) | set(ddp)):
                m, d = ours.get((n, t)), ddp.get((n, t))
                if m:
                    b = base.get((label,) + key(m)) or base.get(("*",) + key(m))
                    eff = "%.0f%%" % (100 * m["samples_per_s"] / (n * b["samples_per_s"])) if b else "-"
                    cx = "%.2f" % (m["compute_ms_median_rank"] / b["compute_ms_median_rank"]) \
                        if b and m.get("compute_ms_median_rank") and b.get("compute_ms_median_rank") else "-"
                    oc = "%.0f%%" % (100 * m["compute_on_cpu_min"]) if m.get("compute_on_cpu_min") is not None else "-"
                    s = "%10.2f %5s %9s %6s %8.1f%% %9.1f%%" % (m["samples_per_s"], eff, cx, oc, 100 * m["imbalance_share"],
                                                               100 * m["allreduce_share"])
                else:
                    s = "%10s %5s %9s %6s %9s %10s" % ("-", "-", "-", "-", "-", "-")
                if d:
                    de = d.get("weak_scaling_efficiency")
                    u = "%10.2f %5s" % (d["samples_per_s"], "%.0f%%" % (100 * de) if de else "-")
                else:
                    u = "%10s %5s" % ("-", "-")
                ratio = "%8.2fx" % (m["samples_per_s"] / d["samples_per_s"]) if m and d else "%9s" % "-"
                per = m["per_rank_batch"] if m else d["per_rank_batch"]
                ranks = "%d" % n if t == 1 else "%dx%d" % (n, t)
                out.append("%-9s %s%5s %7d | %s | %s %s" % (task, "%-20s " % label[:20] if labelled else "", ranks, per, s, u, ratio))
    for r in rows:
        if "error" in r or "skipped_ranks" in r or "skipped_entry" in r:
            out.append("note: " + json.dumps(r))
    # The gradient sum alone (skesl bench-sum), per gradient and way of summing: the median
    # rank's and the slowest rank's median ms, and the all-reduce algorithm where one was forced.
    sums_alone = [r for r in rows if r.get("bench") == "sum"]
    for size in sorted({r["size"] for r in sums_alone}, key=lambda s: min(r["floats"] for r in sums_alone if r["size"] == s)):
        these = [r for r in sums_alone if r["size"] == size]
        out.append("the sum alone, %s gradient (%.1f MB), %d ranks on %d host(s), ms median rank / slowest: " % (
            size, these[0]["mb"], these[0]["ranks"], these[0]["hosts"]) + ", ".join(
            "%s%s %.2f / %.2f" % (r["sum"], sum_variant(r), r["ms_median_rank"], r["ms_slowest_rank"]) for r in these))
    # One CPU's sgemm alone and with every CPU computing at once (bench_node's node check).
    for r in rows:
        if r.get("bench") == "sgemm_load":
            out.append("sgemm (%s kernel), one process alone %.1f GFLOP/s; %d at once%s, min / median / max %.1f / %.1f / %.1f"
                       " (median %.2fx slower: the floor of compute x at that size)" % (
                           r["core"], r["alone_gflops"], r["processes"],
                           " (one per physical core, no hyperthread sibling busy)" if r.get("one_per_core") else "",
                           r["min_gflops"], r["median_gflops"], r["max_gflops"],
                           r["alone_gflops"] / max(r["median_gflops"], 1e-9)))
    # The DDP peer's gloo all-reduce of its gradient alone, best of 5 (bench_torch_ddp.py), to set beside it.
    gloo = ["%s %d ranks %.2f ms" % (next(t for t, n in DDP_NAME.items() if n == r["bench"]), r["world"], r["allreduce_ms"])
            for r in rows if r.get("bench") in DDP_NAME.values() and r.get("world", 1) > 1 and r.get("allreduce_ms") is not None]
    if gloo:
        out.append("PyTorch gloo all-reduce of the DDP peer's gradient alone (best of 5): " + ", ".join(gloo))
    for r in rows:
        if "skipped_sum" in r:
            out.append("note: " + json.dumps(r))
    places = sorted({r.get("placement", "") for r in mine if r["ranks"] > 1} - {""})
    if places:
        out.append("placement (mpirun): " + "; ".join(places))
    sums = {}
    for r in mine:
        if r.get("gradient_sum"):
            sums.setdefault(r["gradient_sum"], []).append("%s %d" % (r.get("label") or r["skesl"], r["ranks"]))
    for g, runs in sums.items():
        out.append("gradient sum: %s: %s" % (g, ", ".join(runs)))
    # From each run's run_start (what the ranks saw of their CPUs): siblings share one core's FMA units.
    shared = ["%s %dx%d: %d of %d" % (r.get("label") or r["skesl"], r["ranks"], r.get("threads_per_rank", 1),
                                      r["ranks_sharing_a_core"], r["ranks"]) for r in mine if r.get("ranks_sharing_a_core")]
    if shared:
        out.append("ranks sharing a physical core with another rank (hyperthread siblings): " + "; ".join(shared))
    numa = ["%s %dx%d: %d of %d" % (r.get("label") or r["skesl"], r["ranks"], r.get("threads_per_rank", 1),
                                    r["ranks_spanning_numa"], r["ranks"]) for r in mine if r.get("ranks_spanning_numa")]
    if numa:
        out.append("ranks with CPUs on more than one NUMA node (part of their memory remote): " + "; ".join(numa))
    # Runs where some rank lost its CPU while it computed, and what else ran in its processes.
    lost = ["%s %dx%d: rank %s on its CPU %.0f%% of forward + backward, preempted up to %.1f times per step; its"
            " other threads ran %.0f ms per step meanwhile (median rank)" % (r.get("label") or r["skesl"], r["ranks"], r.get("threads_per_rank", 1),
                                                     r.get("compute_on_cpu_min_rank", "?"), 100 * r["compute_on_cpu_min"],
                                                     r.get("preemptions_max", 0), r.get("other_threads_compute_ms_median", 0))
            for r in mine if r.get("compute_on_cpu_min") is not None and r["compute_on_cpu_min"] < 0.95]
    if lost:
        out.append("ranks preempted while computing (under 95% on CPU): " + "; ".join(lost))
    # Runs whose control group had a CPU quota: the kernel stops all its threads when they exceed it.
    quota = ["%s %dx%d: quota %g CPU%s, throttled up to %.0f ms per step" % (r.get("label") or r["skesl"], r["ranks"], r.get("threads_per_rank", 1),
                                                                            r["cpu_quota"], "" if r["cpu_quota"] == 1 else "s", r["throttled_ms_max"])
             for r in mine if r.get("cpu_quota") is not None]
    if quota:
        out.append("runs under a CPU quota (cgroup; docs/scaling.md, \"A CPU quota\"): " + "; ".join(quota))
    # Each multi-rank run's own verdict (step_times.diagnosis).
    for r in mine:
        if r["ranks"] > 1 and r.get("diagnosis"):
            out.append("diagnosis, %s %dx%d: %s" % (r.get("label") or r["skesl"], r["ranks"], r.get("threads_per_rank", 1), r["diagnosis"]))
    barrier = sorted({r.get("label") or "all" for r in mine if r.get("imbalance_from") == "barrier"})
    out.append("ranks NxT: N ranks of T BLAS threads; eff against 1 rank of the same threads; compute x: forward+backward"
               " against that rank's; on CPU: the least any rank's training thread ran in its forward+backward; imbalance and all-reduce: the median rank's share of its step (imbalance estimated"
               " from the ranks' ready times%s)" % ("; measured with a barrier in: " + ", ".join(barrier) if barrier else ""))
    if node:
        cpus = max((r["ranks"] * r.get("threads_per_rank", 1) for r in mine), default=0)
        # With hyperthreads (fewer physical cores than CPUs), one rank per core (ranks x threads =
        # cores, the launcher's default today) competes too: it is the placement that leaves the
        # siblings idle, and the line must say whether filling them wins.
        cores = min((r["host_cores"] for r in mine if r.get("host_cores")), default=0)
        fills = {cpus} | ({cores} if 0 < cores < cpus else set())
        for task in ("pretrain", "finetune", "cached"):
            full = sorted((r for r in mine if r["skesl"] == task and r["ranks"] * r.get("threads_per_rank", 1) in fills),
                          key=lambda r: -r["samples_per_s"])
            if full:
                what = "all %d CPUs" % cpus if len(fills) == 1 else \
                    "all %d CPUs or one rank per physical core (%d cores)" % (cpus, cores)
                out.append("node, %s, %s, fastest first: " % (task, what) + ", ".join(
                    "%dx%d %s %.2f s/s" % (r["ranks"], r.get("threads_per_rank", 1), r.get("label", ""), r["samples_per_s"])
                    for r in full))
    return "\n".join(out)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        sys.exit(__doc__)
    print(table(load(args[0]), node="--node" in sys.argv))
