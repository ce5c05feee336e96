"""One active round with timing lines: images/s for training and for pool inference (benchmarks/gpu_check.sh).

    python benchmarks/gpu_round.py --config configs/office31-images.yaml --out /tmp/r50 \
        --set model.backbone=resnet50 --set objective.name=dann --set query.strategy=las --set query.k=5

Runs the config through `ActiveLoop` (warm-up, one query round, training, evaluation), then times one pass of
the model over the target pool. Prints, last, one line that gpu_check.sh greps:

    TIMING device=cuda:0 train_images_per_s=... pool_images_per_s=... train_s_per_step=... query_s=...

train images per step = global batch x the batches the objective draws (source, labelled target if any,
unlabelled target for adaptation objectives). Exits non-zero (and prints why) when anything fails, and with
status 2 before any work when --out is a non-empty folder: `ActiveLoop` would resume the run found there, and a
finished one would report its old timings as this machine's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="run folder: new or empty (a non-empty one is refused)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="config override key=value")
    ap.add_argument("--device", default=None, help="train.device (default: the config's)")
    args = ap.parse_args(argv)
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        ap.error(f"--out {args.out} is not an empty folder: a run there would be resumed and its timings reported "
                 "as this machine's; give a new folder (or remove this one yourself if nothing in it is needed)")

    import numpy as np
    import torch

    from adakit.config import load_config
    from adakit.inference import forward_domain
    from adakit.loop import ActiveLoop

    sets = [*args.sets, "budget.rounds=1"] + ([f"train.device={args.device}"] if args.device else [])
    cfg = load_config(args.config, sets)
    loop = ActiveLoop(cfg, args.out, show_progress=False)
    summary = loop.run()
    obj = loop.objective
    labels = summary["rounds"][-1]["labels"] if summary["rounds"] else 0
    separate = obj.uses_labelled and cfg.train.labelled_target == "separate"
    per_step = cfg.train.batch_size * (1 + int(obj.uses_unlabelled)) + (min(cfg.train.batch_size, labels)
                                                                         if separate else 0)
    sec = summary["train_sec_per_iter"]
    dev = loop.device
    pool = loop.domains.pool
    on_dev = dev.type == "cuda"  # as the run does: a CUDA run's pool outputs stay on the GPU (no host copy)
    forward_domain(loop.model, pool.subset(np.arange(min(len(pool), cfg.train.eval_batch_size))),
                   cfg.train.eval_batch_size, dev, keep_on_device=on_dev)  # warm the kernels
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    loop.infer(pool, keep_on_device=on_dev)  # as the run's pool pass: train.num_workers loader workers
    if dev.type == "cuda":
        torch.cuda.synchronize()
    pool_s = time.perf_counter() - t0
    out = {"device": str(dev), "train_images_per_s": per_step / sec if sec else None,
           "pool_images_per_s": len(pool) / pool_s, "train_s_per_step": sec,
           "model_images_per_s": model_throughput(loop, per_step),
           "query_s": summary["query_seconds"][0] if summary["query_seconds"] else None,
           "final_accuracy": summary["final_accuracy"], "pool_size": len(pool)}
    print(json.dumps(out))
    print("TIMING " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items()),
          flush=True)
    return out


def model_throughput(loop, batch: int, steps: int = 10) -> float:
    """Images/s of the model alone: forward + backward + SGD step on a random in-memory batch of the round's step
    size (no loading, no objective), under the run's autocast and memory format: the ceiling that
    train_images_per_s reaches when loading keeps up. Runs last (it changes the weights)."""
    import torch

    dev, cfg = loop.device, loop.cfg
    model = loop.model.train()
    x = torch.randn(batch, *loop.domains.pool.input_shape, device=dev)  # images, digits or feature vectors
    if dev.type == "cuda" and cfg.train.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-9)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" and cfg.train.amp else None

    def step():
        with amp if amp is not None else torch.enable_grad():
            _, z = model(x)
            loss = z.float().logsumexp(1).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()
