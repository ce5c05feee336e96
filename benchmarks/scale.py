"""Training throughput with 1 and N processes (torchrun, gloo on CPU / NCCL on GPU): steps/s and scaling efficiency.

    python benchmarks/scale.py --steps 200 --out benchmarks/results/scale.md  # driver: every cell, writes the table
    torchrun --nproc_per_node=2 benchmarks/scale.py --worker --objective dann   # one cell (prints a JSON line)

Each cell trains `Trainer.fit` on the Office-31 features config (amazon -> webcam, global batch 32 as in the
config, split across the processes) for ``--warmup`` untimed steps, then times ``--steps`` steps. Scaling
efficiency = (steps/s with N processes) / (N x steps/s with 1 process): 100 % means N processes finish the same
global batches N times faster. ``--out`` replaces only the file's generated section (the table and its conditions,
between the ``<!-- generated: begin -->`` / ``<!-- generated: end -->`` lines) and keeps the text around it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import check_sections, write_section  # noqa: E402

CONFIG = ROOT / "configs" / "office31-features.yaml"
OBJECTIVES = ("source_only", "dann", "gsda")


def worker(objective: str, steps: int, warmup: int, threads: int, device: str) -> None:
    import numpy as np
    import torch

    from adakit import distributed
    from adakit.config import load_config
    from adakit.data import load_domains
    from adakit.loop import resolve_device
    from adakit.models import build_model
    from adakit.registry import OBJECTIVES as REG
    from adakit.train import Trainer

    info = distributed.init(device)
    torch.set_num_threads(threads)
    # the MLP width scale.md was measured with (the config's default is 1024 since 2026-12-02)
    cfg = load_config(CONFIG, [f"objective.name={objective}", f"train.device={device}", "model.hidden_dim=512"])
    dev = resolve_device(cfg.train.device)
    d = load_domains(cfg.data, cfg.seed)
    torch.manual_seed(0)
    model = build_model(cfg.model, tuple(d.source.input_shape), len(d.classes)).to(dev)
    obj = REG.get(objective)(cfg.objective_params(), feature_dim=model.feature_dim, num_classes=len(d.classes),
                             pool_size=len(d.pool)).to(dev)
    trainer = Trainer(model, obj, cfg.train, dev)
    labelled = np.arange(0, len(d.pool), 20)
    trainer.fit(d.source, d.pool, labelled, d.pool.y[labelled], warmup, seed=1, show_progress=False)
    distributed.barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.fit(d.source, d.pool, labelled, d.pool.y[labelled], steps, seed=2, show_progress=False)
    distributed.barrier()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if info.main:
        print(json.dumps({"objective": objective, "processes": info.world_size, "backend": info.backend or "none",
                          "steps": steps, "wall_s": wall, "cpu_s_rank0": cpu, "steps_per_s": steps / wall,
                          "batch": cfg.train.batch_size}), flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cell(objective: str, procs: int, args) -> dict:
    me = [str(Path(__file__).resolve()), "--worker", "--objective", objective, "--steps", str(args.steps),
          "--warmup", str(args.warmup), "--threads", str(args.threads), "--device", args.device]
    cmd = [sys.executable, *me] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}", "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}", *me]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"cell {objective} x {procs} failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return json.loads([ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help="run one cell in this process (under torchrun or not)")
    ap.add_argument("--objective", default="dann")
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--procs", default="1,2", help="process counts to compare")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--repeats", type=int, default=2, help="runs per cell; the best is kept (load noise)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file: its generated section (the table) is replaced, the rest kept")
    args = ap.parse_args()
    if args.worker:
        worker(args.objective, args.steps, args.warmup, args.threads, args.device)
        return
    if args.out:
        check_sections(args.out)  # before the measurement: a file without the markers is refused
    procs = [int(p) for p in args.procs.split(",")]
    load_before = os.getloadavg()
    rows = []
    for objective in args.objectives.split(","):
        cells = {}
        for p in procs:
            runs = [run_cell(objective, p, args) for _ in range(args.repeats)]
            cells[p] = max(runs, key=lambda r: r["steps_per_s"])
            cells[p]["all"] = [round(r["steps_per_s"], 2) for r in runs]
            print(json.dumps(cells[p]), flush=True)
        rows.append((objective, cells))
    load_after = os.getloadavg()
    lines = ["| objective | processes | steps/s (best) | all runs | samples/s | rank-0 CPU ms/step | speed-up | "
             "efficiency |", "|---|---|---|---|---|---|---|---|"]
    for objective, cells in rows:
        base = cells[procs[0]]["steps_per_s"]
        for p in procs:
            c = cells[p]
            speed = c["steps_per_s"] / base
            lines.append(f"| {objective} | {p} ({c['backend']}) | {c['steps_per_s']:.1f} | {c['all']} | "
                         f"{c['steps_per_s'] * c['batch']:.0f} | {1000 * c['cpu_s_rank0'] / c['steps']:.1f} | "
                         f"{speed:.2f}x | {100 * speed / p * procs[0]:.0f} % |")
    conditions = (f"{platform.node()}: {os.cpu_count()} logical CPUs, {args.threads} torch thread(s) per process, "
                  f"{args.steps} timed steps after {args.warmup} untimed, best of {args.repeats}; "
                  f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    table = "\n".join(lines)
    print(table)
    print(conditions)
    if args.out:
        write_section(args.out, f"{table}\n\nConditions: {conditions}\n",
                      head="# Training throughput with 1 and N processes\n\n")


if __name__ == "__main__":
    main()
