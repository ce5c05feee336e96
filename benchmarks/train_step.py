"""Training step time of three settings, timed interleaved in one process: torch's fused SGD kernel (the default
since 2026-12-03), the foreach kernel used before it (``train.fused_sgd: false``) and the fused kernel with bf16
autocast on the CPU (``train.cpu_amp: true``, opt-in).

    OMP_NUM_THREADS=1 python benchmarks/train_step.py --out benchmarks/results/train_step.md

``--out`` replaces only the file's generated section (the table and its conditions, between the
``<!-- generated: begin -->`` / ``<!-- generated: end -->`` lines) and keeps the hand-written text around it; a new
file gets a title and that section.

Each cell builds one `Trainer` per setting on the same model initialisation and alternates blocks of `Trainer.fit`
steps between them (``--blocks`` blocks each, after one untimed block each), so all see the same machine state; the
table gives the median wall and CPU milliseconds per step and each setting's CPU time relative to the default.
Models: the Office-31 features MLP (configs/office31-features.yaml: 1280 → 1024 → bottleneck 256 → 31, batch 32)
with fine-tuning (S+T, 40 labelled target samples) and with DANN; LeNet on MNIST → USPS
(configs/digits-mnist-usps.yaml, batch 64); a ResNet-18 from scratch on 3×64×64 random images (batch 16), where
the convolutions dominate the step.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import check_sections, write_section  # noqa: E402

#: the settings timed, as `TrainConfig` updates; the first is the default the others are compared with
SETTINGS = {"fused (default)": {"fused_sgd": True, "cpu_amp": False},
            "foreach": {"fused_sgd": False, "cpu_amp": False},
            "fused + cpu_amp": {"fused_sgd": True, "cpu_amp": True}}

CELLS = {  # name: (config, overrides, steps per block as a fraction of --block)
    "office31 MLP, finetune": ("office31-features.yaml", ["objective.name=finetune"], 1.0),
    "office31 MLP, dann": ("office31-features.yaml", ["objective.name=dann"], 1.0),
    "LeNet digits, finetune": ("digits-mnist-usps.yaml", ["objective.name=finetune"], 1.0),
    "ResNet-18 64 px, finetune": (None, [], 0.1),  # ~0.3 s per step on one CPU thread
}


def _cell(name: str):
    """(source, pool, model factory, objective factory, train config) of one cell."""
    import numpy as np
    import torch

    from adakit.config import ModelConfig, TrainConfig, load_config
    from adakit.data import TensorDomain, load_domains
    from adakit.models import build_model
    from adakit.registry import OBJECTIVES

    config, overrides, _ = CELLS[name]
    if config is None:  # random images: only the step's arithmetic matters here
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(256, 3, 64, 64, generator=g), np.arange(256) % 10
        src = TensorDomain(name="s", classes=[str(i) for i in range(10)], ids=np.arange(256).astype(str), y=y, x=x)
        pool = TensorDomain(name="t", classes=src.classes, ids=np.arange(256).astype(str), y=y, x=x.flip(3))
        model_cfg = ModelConfig(backbone="resnet18", weights=None)
        train = TrainConfig(batch_size=16)
        obj_name, obj_params = "finetune", None
    else:
        cfg = load_config(ROOT / "configs" / config, overrides)
        d = load_domains(cfg.data, cfg.seed)
        src, pool, model_cfg, train = d.source, d.pool, cfg.model, cfg.train
        obj_name, obj_params = cfg.objective.name, cfg.objective_params()
    obj_cls = OBJECTIVES.get(obj_name)
    params = obj_params if obj_params is not None else obj_cls.Params()

    def model():
        torch.manual_seed(0)
        return build_model(model_cfg, tuple(src.input_shape), len(src.classes))

    def objective(m):
        return obj_cls(params, feature_dim=m.feature_dim, num_classes=len(src.classes), pool_size=len(pool))

    return src, pool, model, objective, train


def run(name: str, blocks: int, block: int) -> dict:
    import numpy as np
    import torch

    from adakit.train import Trainer

    src, pool, model, objective, train = _cell(name)
    block = max(1, round(block * CELLS[name][2]))
    labelled = np.arange(0, len(pool), max(1, len(pool) // 40))[:40]
    trainers = {}
    for setting, update in SETTINGS.items():
        m = model()
        trainers[setting] = Trainer(m, objective(m), train.model_copy(update=update), torch.device("cpu"))
    times: dict = {k: ([], []) for k in trainers}
    for b in range(blocks + 1):
        for setting, tr in trainers.items():
            w0, c0 = time.perf_counter(), time.process_time()
            tr.fit(src, pool, labelled, pool.y[labelled], block, seed=b, show_progress=False)
            if b:  # the first block of each is untimed (allocations, lazy initialisation)
                times[setting][0].append((time.perf_counter() - w0) / block)
                times[setting][1].append((time.process_time() - c0) / block)
    med = {k: (float(np.median(w)) * 1e3, float(np.median(c)) * 1e3) for k, (w, c) in times.items()}
    first = trainers[next(iter(trainers))]
    params = sum(p.numel() for p in first.model.parameters()) + sum(p.numel() for p in first.objective.parameters())
    return {"name": name, "params": params, "block": block, "ms": med}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=8, help="timed blocks per setting (interleaved)")
    ap.add_argument("--block", type=int, default=50, help="Trainer.fit steps per block")
    ap.add_argument("--only", action="append", help="run only this cell (repeatable)")
    ap.add_argument("--out", type=Path, help="results file: its generated section is replaced, the rest kept")
    args = ap.parse_args()
    if args.out:
        check_sections(args.out)  # before the measurement: a file without the markers is refused
    import torch

    from adakit.provenance import cpu_info

    load0 = os.getloadavg()[0]
    rows = [run(n, args.blocks, args.block) for n in CELLS if not args.only or n in args.only]
    load1 = os.getloadavg()[0]
    names = list(SETTINGS)
    lines = ["| model, objective | parameters | steps per block | "
             + " | ".join(f"{n} ms/step (wall / CPU)" for n in names) + " | "
             + " | ".join(f"{n} / {names[0]} (CPU)" for n in names[1:]) + " |",
             "|---|---:|---:|" + "---:|" * (2 * len(names) - 1)]
    for r in rows:
        base = r["ms"][names[0]][1]
        lines.append(f"| {r['name']} | {r['params'] / 1e6:.2f} M | {r['block']} | "
                     + " | ".join(f"{r['ms'][n][0]:.2f} / {r['ms'][n][1]:.2f}" for n in names) + " | "
                     + " | ".join(f"{r['ms'][n][1] / base:.2f}×" for n in names[1:]) + " |")
    cpu = cpu_info()
    conditions = (f"{cpu['cpu']} ({cpu['cpu_capability']} kernels), torch {torch.__version__}, "
                  f"{torch.get_num_threads()} torch thread(s); median of {args.blocks} interleaved blocks "
                  f"per setting after one untimed block each; load average {load0:.1f} before, "
                  f"{load1:.1f} after")
    text = "\n".join(lines) + f"\n\nConditions: {conditions}.\n"
    print(text)
    if args.out:
        write_section(args.out, text, head="# Training step time: SGD kernel and bf16 autocast on the CPU\n\n")


if __name__ == "__main__":
    main()
