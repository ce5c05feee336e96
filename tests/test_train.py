import warnings

import numpy as np
import pytest
import torch

from adakit.adapt.finetune import FineTune
from adakit.config import TrainConfig
from adakit.data.domain import TensorDomain
from adakit.models import grad_reverse, grl_schedule
from adakit.train import Trainer, class_balanced_weights, index_batches, inverse_decay


def test_lr_and_grl_schedules():
    assert inverse_decay(0.0) == 1.0
    np.testing.assert_allclose(inverse_decay(1.0), 11 ** -0.75)
    assert grl_schedule(0.0) == 0.0
    np.testing.assert_allclose(grl_schedule(1.0), 2 / (1 + np.exp(-10)) - 1)


def test_grad_reverse_negates_and_scales():
    x = torch.randn(4, 3, requires_grad=True)
    (grad_reverse(x, 0.3) * 2).sum().backward()
    np.testing.assert_allclose(x.grad, -0.6 * torch.ones(4, 3))


def test_index_batches_cover_epochs_and_balance():
    gen = np.random.default_rng(0)
    b = index_batches(np.arange(10), 5, 4, gen)
    assert b.shape == (4, 5) and sorted(b[:2].ravel()) == list(range(10))
    y = np.array([0] * 90 + [1] * 10)
    w = class_balanced_weights(y)
    draws = index_batches(np.arange(100), 50, 200, gen, w)
    assert abs((y[draws] == 1).mean() - 0.5) < 0.02


class _Spy(FineTune):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.seen = []

    def forward(self, model, batch, progress):
        self.seen.append(batch)
        self.autocast = torch.is_autocast_enabled("cpu")
        return super().forward(model, batch, progress)


def _setup(mode, bottleneck_dim=0, **train):
    from adakit.config import ModelConfig
    from adakit.models import build_model

    src = TensorDomain(name="s", classes=["a", "b"], ids=[f"s{i}" for i in range(20)], y=np.arange(20) % 2,
                       x=torch.randn(20, 5))
    pool = TensorDomain(name="t", classes=["a", "b"], ids=[f"t{i}" for i in range(10)], y=np.arange(10) % 2,
                        x=torch.randn(10, 5) + 100)  # target rows are recognisable (+100)
    model = build_model(ModelConfig(backbone="identity", bottleneck_dim=bottleneck_dim), (5,), 2)
    obj = _Spy(FineTune.Params(), feature_dim=model.feature_dim, num_classes=2)
    cfg = TrainConfig(**{"batch_size": 8, "labelled_target": mode, **train})
    return Trainer(model, obj, cfg, torch.device("cpu")), obj, src, pool


def test_union_folds_labelled_target_into_source_batch():
    trainer, obj, src, pool = _setup("union")
    trainer.fit(src, pool, np.array([3, 7]), np.array([1, 0]), iters=10, seed=0, show_progress=False)
    rows = torch.cat([b.xs for b in obj.seen])
    ys = torch.cat([b.ys for b in obj.seen])
    is_t = torch.cat([b.target_in_s for b in obj.seen])
    assert is_t.any() and all(b.xl is None for b in obj.seen)
    assert (rows[is_t].mean(1) > 50).all() and (rows[~is_t].mean(1) < 50).all()
    t_rows = rows[is_t]
    for r, y in zip(t_rows, ys[is_t]):
        i = int(torch.argmin((pool.x - r).abs().sum(1)))
        assert i in (3, 7) and int(y) == {3: 1, 7: 0}[i]


def test_separate_draws_a_labelled_batch_and_trains():
    trainer, obj, src, pool = _setup("separate")
    stats = trainer.fit(src, pool, np.array([3, 7]), np.array([1, 0]), iters=20, seed=0, show_progress=False)
    assert all(b.xl is not None and set(b.idx_l.tolist()) <= {3, 7} for b in obj.seen)
    assert {"ce_source", "ce_target", "loss", "sec_per_iter"} <= set(stats)
    assert all(b.xu is None for b in obj.seen)  # fine-tuning does not load unlabelled target batches


def test_fit_is_deterministic_for_a_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        trainer, _, src, pool = _setup("separate")
        trainer.fit(src, pool, np.array([1]), np.array([1]), iters=15, seed=5, show_progress=False)
        outs.append(trainer.model.head.weight.detach().clone())
    torch.testing.assert_close(outs[0], outs[1])


def test_fused_and_foreach_sgd_make_the_same_update():
    """train.fused_sgd picks torch's fused kernel (default) or the foreach one; both apply SGD with momentum,
    Nesterov and weight decay, so after 15 steps the weights agree to float32 rounding, and a fused run repeats."""
    heads = {}
    for fused in (True, False, True):
        torch.manual_seed(0)
        trainer, _, src, pool = _setup("separate", fused_sgd=fused)
        group = trainer.optimizer.param_groups[0]
        assert (group["fused"], group["foreach"]) == ((True, None) if fused else (None, True))
        trainer.fit(src, pool, np.array([1]), np.array([1]), iters=15, seed=5, show_progress=False)
        heads.setdefault(fused, []).append(trainer.model.head.weight.detach().clone())
    assert torch.equal(heads[True][0], heads[True][1])
    torch.testing.assert_close(heads[True][0], heads[False][0], rtol=1e-5, atol=1e-6)
    from adakit.train import sgd

    meta = [{"params": [torch.nn.Parameter(torch.empty(3, device="meta"))]}]  # a device without adakit's fused path
    assert sgd(meta, TrainConfig(fused_sgd=True)).param_groups[0]["foreach"] is True


def test_cpu_amp_trains_under_bf16_autocast_only_when_asked():
    for cpu_amp in (False, True):
        torch.manual_seed(0)
        trainer, obj, src, pool = _setup("separate", cpu_amp=cpu_amp)
        stats = trainer.fit(src, pool, np.array([1]), np.array([1]), iters=5, seed=5, show_progress=False)
        assert obj.autocast is cpu_amp and np.isfinite(stats["loss"])
        assert trainer.model.head.weight.dtype == torch.float32  # autocast keeps the weights in float32


def test_cpu_amp_warns_on_a_cpu_without_bf16(monkeypatch):
    import platform

    import adakit.train as train

    lacks = train.cpu_lacks_bf16
    monkeypatch.setattr(train, "cpu_lacks_bf16", lambda: True)
    with pytest.warns(RuntimeWarning, match="no bf16 instructions .* set train.cpu_amp: false"):
        _setup("separate", cpu_amp=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _setup("separate", cpu_amp=False)  # off: no warning
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    assert lacks() is False  # other architectures: torch's x86 probes say nothing about them


@pytest.mark.parametrize("fraction,steps", [(0.25, 3), (1.0, 12)])
def test_weight_average_ends_the_fit_on_the_mean_of_the_last_steps(fraction, steps):
    """train.weight_average: parameters and float buffers (batch-norm statistics) become the mean of the raw weights
    after each of the last ``round(iters × fraction)`` steps; integer buffers keep their count."""
    torch.manual_seed(0)
    trainer, _, src, pool = _setup("separate", bottleneck_dim=4, weight_average=fraction)
    tensors = dict(trainer.model.state_dict(keep_vars=True))
    snaps = []
    trainer.fit(src, pool, np.array([1]), np.array([1]), iters=12, seed=5, show_progress=False,
                on_step=lambda k: snaps.append({n: t.detach().clone() for n, t in tensors.items()}))
    assert any(n.endswith("running_mean") for n in tensors)
    for name, t in trainer.model.state_dict().items():
        if t.is_floating_point():
            torch.testing.assert_close(t, torch.stack([s[name] for s in snaps[-steps:]]).mean(0), msg=name)
            assert not torch.equal(t, snaps[-1][name]), name  # (the raw weights moved: the average differs)
        else:
            assert torch.equal(t, snaps[-1][name]), name


def test_no_weight_average_leaves_the_fit_as_it_was():
    outs = []
    for wa in (0.0, None):
        torch.manual_seed(0)
        trainer, _, src, pool = _setup("separate", **({} if wa is None else {"weight_average": wa}))
        trainer.fit(src, pool, np.array([1]), np.array([1]), iters=15, seed=5, show_progress=False)
        outs.append(trainer.model.head.weight.detach().clone())
    assert torch.equal(outs[0], outs[1])


def test_a_class_balanced_batch_holds_at_most_the_source_like_a_plain_one():
    """train.class_balanced_source drew train.batch_size rows with replacement from a smaller source (20 samples,
    batch 32: 12 repeats a step), while the plain sampler caps the batch at the source size; both cap it now, and a
    larger source still gets batch_size rows, class-balanced."""
    gen = np.random.default_rng(0)
    w = class_balanced_weights(np.array([0, 0, 0, 1, 1]))
    assert index_batches(np.arange(5), 32, 3, gen, w).shape == (3, 5)
    assert index_batches(np.arange(5), 32, 3, gen).shape == (3, 5)
    assert index_batches(np.arange(100), 32, 3, gen, np.ones(100)).shape == (3, 32)
    for mode in ("separate", "union"):
        sizes = {}
        for balanced in (False, True):
            trainer, obj, src, pool = _setup(mode, batch_size=32, class_balanced_source=balanced)
            trainer.fit(src, pool, np.array([3, 7]), np.array([1, 0]), iters=4, seed=0, show_progress=False)
            sizes[balanced] = {len(b.xs) for b in obj.seen}
        assert sizes[True] == sizes[False] == {20 + 2 * (mode == "union")}  # (S∪T: source and labelled target rows)


def test_a_fit_too_long_for_memory_is_refused_naming_the_setting():
    """train.warmup_iters: 100000000 died with a raw MemoryError: a fit draws the sample indices of all its steps
    before the first (100M steps x 32 rows, 24 GiB of int64 per stream). The run's check refuses step counts whose
    indices exceed the machine's memory, naming the setting and the memory."""
    from adakit.errors import ConfigError
    from adakit.train import check_index_memory

    with pytest.raises(ConfigError, match=r"train.warmup_iters: 100000000 steps of train.batch_size=32 rows: a fit "
                                          r"draws .* about 143.1 GiB here, more than this machine's 64.0 GiB of "
                                          r"memory; lower train.warmup_iters \(or train.batch_size\)"):
        check_index_memory(TrainConfig(warmup_iters=100_000_000), memory=64 * 2**30)
    with pytest.raises(ConfigError, match=r"train.round_iters: 3000000 steps"):
        check_index_memory(TrainConfig(round_iters=3_000_000), memory=2**30)
    check_index_memory(TrainConfig(), memory=2**30)  # 1,000 steps: 1.5 MiB


def test_activeloop_refuses_a_warmup_beyond_memory_before_any_work(tmp_path, monkeypatch):
    """The refusal comes before the data is loaded and the run folder is created (a 64 GiB machine here)."""
    from adakit.errors import ConfigError
    from adakit.loop import ActiveLoop

    monkeypatch.setattr("adakit.train.physical_memory", lambda: 64 * 2**30)
    with pytest.raises(ConfigError, match=r"invalid config:\n  train.warmup_iters: 100000000 steps .*about 143.1 GiB"):
        ActiveLoop({"train": {"warmup_iters": 100_000_000}}, tmp_path / "r", show_progress=False)
    assert not (tmp_path / "r").exists()
