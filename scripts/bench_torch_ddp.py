"""Peer benchmark: PyTorch DistributedDataParallel (gloo, localhost) weak scaling of the
reference pretraining step (BERT-base frozen in train mode, 4 shared cross-modal layers,
dropouts as the reference, Adam lr 1e-4, L1 loss), one thread per rank. --task finetune:
the fine-tuning step (BERT trainable, parameter groups as bench_torch.py); --task cached:
the pretraining step from precomputed BERT [MASK] rows (bench_torch.py's pretrain_cached).

Prints JSON lines: per world size the step time (slowest rank), samples/s over all ranks,
the time of one all-reduce of the gradient buffer alone, and the weak-scaling efficiency
samples/s(W) / (W * samples/s(1)).

Run: .venv/bin/python scripts/bench_torch_ddp.py --worlds 1,2 --per-rank 8 --steps 4
"""
import argparse
import json
import os
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_torch as bt  # noqa: E402
import torch_reference as ref  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, world, port, args, results):
    torch.set_num_threads(args.threads)  # skesl's THREADS: the same CPU budget per rank
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GLOO_SOCKET_IFNAME": "lo"})
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # same initial weights everywhere (DDP also broadcasts rank 0's)
    batch = bt.make_batch(args.per_rank, seed=100 + rank)  # each rank its own shard
    if args.task == "finetune":
        model = ref.SKESLModel(bt.reference_config("finetune", False)).train()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.Adam([{"params": list(model.bert.parameters()), "lr": 5e-6},
                                {"params": list(model.crossmodal.parameters()), "lr": 5e-6},
                                {"params": list(model.head.parameters()), "lr": 1e-4}])
        forward = lambda: ddp(batch)["prediction"]  # noqa: E731
    elif args.task == "cached":
        model = ref.SKESLModel(bt.reference_config("pretrain", True)).train()
        rows = bt.mask_rows_of_bert(model, batch)  # the cache: computed once, outside the timed steps

        class Cached(torch.nn.Module):  # DDP needs the forward to go through its wrapper
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, r, a, v):
                return bt.encoder_on_rows(self.m, r, a, v)
        ddp = torch.nn.parallel.DistributedDataParallel(Cached(model))
        opt = torch.optim.Adam([p for _, p in model.trainable_named_parameters()], lr=1e-4)
        forward = lambda: ddp(rows, batch["audio"], batch["video"])  # noqa: E731
    else:
        model = ref.SKESLModel(bt.reference_config("pretrain", True)).train()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.Adam([p for _, p in model.trainable_named_parameters()], lr=1e-4)
        forward = lambda: ddp(batch)["prediction"]  # noqa: E731

    def step():
        opt.zero_grad(set_to_none=True)
        loss = ref.l1_loss(forward(), batch["targets"])
        loss.backward()  # DDP all-reduces the trainable gradients here
        opt.step()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        dist.barrier()
        t0 = time.perf_counter()
        step()
        t = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)  # a step lasts until its slowest rank is done
        times.append(t.item())

    n_grad = sum(p.numel() for p in ddp.parameters() if p.requires_grad)
    buf = torch.randn(n_grad)
    ar = []
    for _ in range(5):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(buf)
        ar.append(time.perf_counter() - t0)
    if rank == 0:
        results.put({"times": times, "allreduce_s": min(ar), "grad_params": n_grad})
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worlds", default="1,2")
    ap.add_argument("--per-rank", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per rank")
    ap.add_argument("--task", default="pretrain", choices=["pretrain", "finetune", "cached"])
    args = ap.parse_args()
    print(json.dumps({"env": "torch_ddp", "torch": torch.__version__, "backend": "gloo", "threads_per_rank": args.threads,
                      "cpu": bt.cpu_name(), "cores": os.cpu_count()}), flush=True)
    ctx = mp.get_context("spawn")
    base = None
    for world in [int(w) for w in args.worlds.split(",")]:
        results = ctx.SimpleQueue()
        mp.spawn(worker, args=(world, free_port(), args, results), nprocs=world, join=True)
        r = results.get()
        med = sorted(r["times"])[len(r["times"]) // 2]
        sps = world * args.per_rank / med
        if world == 1:
            base = sps
        name = {"pretrain": "ddp_pretrain_reference", "finetune": "ddp_finetune_reference",
                "cached": "ddp_pretrain_cached"}[args.task]
        line = {"bench": name, "world": world, "per_rank_batch": args.per_rank, "threads_per_rank": args.threads,
                "steps": args.steps, "ms_per_step_median": round(med * 1e3, 1),
                "ms_each": [round(t * 1e3, 1) for t in r["times"]], "samples_per_s": round(sps, 3),
                "grad_params": r["grad_params"], "allreduce_ms": round(r["allreduce_s"] * 1e3, 2)}
        if base:
            line["weak_scaling_efficiency"] = round(sps / (world * base), 3)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
