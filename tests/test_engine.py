"""Engine pieces: LR schedules, parameter groups, the train step (accumulation, loss scale,
clipping), EMA, and a run combining the optional training features."""
import json

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from conftest import cli
from ms_suite.config.schema import TrainConfig
from ms_suite.engine.optim import build_lr_schedule, build_optimizer
from ms_suite.engine.optim.fused_momentum import FusedDecayMomentum
from ms_suite.engine.train_step import EmaUpdate, TrainStep


def test_warmup_then_cosine():
    cfg = TrainConfig(epochs=10, lr=0.1, warmup_epochs=1, schedule="cosine", min_lr=0.001)
    lr = build_lr_schedule(cfg, steps_per_epoch=10, peak_lr=0.1)
    assert lr.shape == (100,) and lr.dtype == np.float32
    assert lr[0] == pytest.approx(0.001) and lr[9] < 0.1 and lr[10] == pytest.approx(0.1)
    assert np.all(np.diff(lr[10:]) <= 1e-9) and lr[-1] == pytest.approx(0.001, rel=0.05)


@pytest.mark.parametrize("schedule", ["cosine", "poly"])
@pytest.mark.parametrize("scale", [0.5, 4.0])
def test_scaled_lr_decays_from_the_scaled_peak_to_min_lr(schedule, scale):
    """scale_lr multiplies the peak (0.1 -> 0.1 * scale); the floor stays min_lr, not min_lr * scale."""
    cfg = TrainConfig(epochs=10, lr=0.1, schedule=schedule, min_lr=0.01, power=2.0, scale_lr=True)
    peak, t = 0.1 * scale, np.arange(100) / 100
    shape = 0.5 * (1 + np.cos(np.pi * t)) if schedule == "cosine" else (1 - t) ** 2
    lr = build_lr_schedule(cfg, steps_per_epoch=10, peak_lr=peak)
    np.testing.assert_allclose(lr, 0.01 + (peak - 0.01) * shape, rtol=1e-5)


@pytest.mark.parametrize("schedule, expect", [
    ("step", {0: 0.1, 29: 0.1, 30: 0.01, 60: 0.001}),
    ("multistep", {0: 0.1, 29: 0.1, 30: 0.01, 60: 0.001, 80: 0.0001}),
    ("constant", {0: 0.1, 89: 0.1}),
    ("poly", {0: 0.1, 45: 0.05}),
])
def test_epoch_schedules(schedule, expect):
    cfg = TrainConfig(epochs=90, lr=0.1, schedule=schedule, step_epochs=30, milestones=[30, 60, 80])
    lr = build_lr_schedule(cfg, steps_per_epoch=1, peak_lr=0.1)
    for epoch, value in expect.items():
        assert lr[epoch] == pytest.approx(value, rel=1e-5), (schedule, epoch)


def _mlp():
    ms.set_seed(0)
    return nn.SequentialCell(nn.Dense(4, 8), nn.ReLU(), nn.Dense(8, 3))


class _Loss(nn.Cell):
    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net
        self.ce = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")

    def construct(self, x, y):
        return self.ce(self.net(x), y)


def _weights(net):
    return [p.asnumpy().copy() for p in net.trainable_params()]


def _sgd(net, lr=0.1):
    return nn.SGD(net.trainable_params(), learning_rate=lr)


def test_no_decay_groups_exclude_bias_and_norm():
    net = nn.SequentialCell(nn.Dense(4, 4), nn.BatchNorm1d(4))
    lr = np.full(10, 0.1, np.float32)
    opt = build_optimizer(net, TrainConfig(weight_decay=0.1, no_decay_bn_bias=True), lr)
    decayed = {p.name for p, wd in zip(opt.parameters, opt.weight_decay) if float(wd.asnumpy()) > 0}
    assert decayed == {"0.weight"}
    opt = build_optimizer(net, TrainConfig(weight_decay=0.1, no_decay_bn_bias=False), lr)
    assert float(np.asarray(opt.weight_decay.asnumpy() if hasattr(opt.weight_decay, "asnumpy")
                            else opt.weight_decay[0].asnumpy())) == pytest.approx(0.1)


def _conv_bn():
    ms.set_seed(0)
    return nn.SequentialCell(nn.Conv2d(3, 4, 3, weight_init="he_normal"), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.Flatten(), nn.Dense(4 * 6 * 6, 3))


@pytest.mark.parametrize("no_decay_bn_bias", [True, False], ids=["groups", "one-group"])
@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE], ids=["pynative", "graph"])
def test_fused_decay_momentum_equals_nn_momentum_bit_for_bit(mode, no_decay_bn_bias):
    """CPU SGD recipes step with FusedDecayMomentum: the same weights and moments as nn.Momentum."""
    ms.set_context(mode=mode)
    rng = np.random.RandomState(0)
    x, y = Tensor(rng.randn(8, 3, 6, 6).astype(np.float32)), Tensor(np.arange(8, dtype=np.int32) % 3)
    cfg = TrainConfig(weight_decay=0.01, momentum=0.9, no_decay_bn_bias=no_decay_bn_bias)
    lr = np.linspace(0.1, 0.05, 10).astype(np.float32)
    fused_net, plain_net = _conv_bn(), _conv_bn()
    fused = build_optimizer(fused_net, cfg, lr)
    params = plain_net.trainable_params()
    groups = ([{"params": [p for p in params if p.ndim > 1], "weight_decay": 0.01},
               {"params": [p for p in params if p.ndim == 1], "weight_decay": 0.0}] if no_decay_bn_bias
              else [{"params": params, "weight_decay": 0.01}])
    plain = nn.Momentum(groups, Tensor(lr), 0.9, weight_decay=0.01)
    assert isinstance(fused, FusedDecayMomentum)
    steps = [TrainStep(_Loss(net), opt) for net, opt in ((fused_net, fused), (plain_net, plain))]
    for _ in range(3):
        for step in steps:
            step(True, x, y)
    for a, b in zip(fused_net.get_parameters(), plain_net.get_parameters()):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy(), err_msg=a.name)
    for a, b in zip(fused.moments, plain.moments):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy(), err_msg=a.name)


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE], ids=["pynative", "graph"])
def test_accumulation_equals_one_big_batch(mode):
    ms.set_context(mode=mode)  # graph mode once dropped the buffer writes of non-applying micro-steps
    x = Tensor(np.random.RandomState(0).randn(8, 4).astype(np.float32))
    y = Tensor(np.arange(8, dtype=np.int32) % 3)
    big, small = _mlp(), _mlp()
    TrainStep(_Loss(big), _sgd(big))(True, x, y)
    step = TrainStep(_Loss(small), _sgd(small), accumulation_steps=2)
    step(False, x[:4], y[:4])
    step(True, x[4:], y[4:])
    for a, b in zip(_weights(big), _weights(small)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert all(float(np.abs(buf.asnumpy()).max()) == 0 for buf in step.accum_grads)


def test_dynamic_loss_scale_skips_overflow_and_halves_scale():
    net = _mlp()
    step = TrainStep(_Loss(net), _sgd(net), loss_scale="dynamic", scale_value=1024.0)
    before = _weights(net)
    bad = Tensor(np.full((2, 4), np.inf, np.float32))
    _, finite = step(True, bad, Tensor(np.zeros(2, np.int32)))
    assert not bool(finite.asnumpy())
    assert float(step.loss_scale.asnumpy()) == 512.0
    for a, b in zip(before, _weights(net)):
        np.testing.assert_array_equal(a, b)


def test_gradient_clipping_bounds_the_update():
    net = _mlp()
    step = TrainStep(_Loss(net), _sgd(net, lr=1.0), clip_norm=0.01)
    before = _weights(net)
    x = Tensor(np.random.RandomState(1).randn(8, 4).astype(np.float32) * 100)
    step(True, x, Tensor(np.zeros(8, np.int32)))
    delta = np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(before, _weights(net))))
    assert delta <= 0.01 + 1e-5


def test_ema_update_and_swap():
    net = _mlp()
    ema = EmaUpdate(net, decay=0.5)
    first = net.trainable_params()[0]
    start = first.asnumpy().copy()
    first.set_data(Tensor(start + 2.0))
    ema()
    shadow = ema.ema[0].asnumpy()
    np.testing.assert_allclose(shadow, start + 1.0, rtol=1e-6)
    ema.swap()
    np.testing.assert_allclose(first.asnumpy(), start + 1.0, rtol=1e-6)
    ema.swap()
    np.testing.assert_allclose(first.asnumpy(), start + 2.0, rtol=1e-6)


@pytest.mark.slow
def test_optional_features_train_together(tmp_path, cache_env):
    """AdamW + EMA + mixup/cutmix + label smoothing + accumulation + clipping + AMP request on CPU."""
    out = tmp_path / "features"
    proc = cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(out), "--set",
               "model.kwargs.base_width=8", "train.epochs=1", "train.batch_size=32", "train.optimizer=adamw",
               "train.lr=0.002", "train.weight_decay=0.05", "train.ema_decay=0.9", "data.mixup=0.2",
               "data.cutmix=1.0", "train.label_smoothing=0.1", "train.accumulation_steps=2",
               "train.clip_grad_norm=1.0", "train.amp_level=O2", "train.schedule=multistep",
               "train.milestones=[1]")
    assert "amp_level=O2 is not supported on CPU; training in float32" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 1437 // 32 // 2 and summary["global_batch_size"] == 64
    assert np.isfinite(summary["metrics"]["loss"])
    params = ms.load_checkpoint(summary["final_checkpoint"])
    assert any(name.startswith("ema.") for name in params) and any(n.startswith("adam_m.") for n in params)


@pytest.mark.slow
def test_lamb_trains(tmp_path, cache_env):
    out = tmp_path / "lamb"
    cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(out), "--set", "model.kwargs.base_width=8",
        "train.epochs=1", "train.batch_size=64", "train.optimizer=lamb", "train.lr=0.01")
    assert json.loads((out / "summary.json").read_text())["steps"] == 22


def test_standard_ops_lamb_matches_the_paper_update():
    from ms_suite.engine.optim.lamb import StandardOpsLamb

    net = nn.Dense(3, 2, has_bias=False)
    w0 = net.weight.asnumpy().copy()
    grad = np.random.RandomState(2).randn(2, 3).astype(np.float32)
    opt = StandardOpsLamb(net.trainable_params(), learning_rate=0.1, beta1=0.9, beta2=0.999, eps=1e-6,
                          weight_decay=0.01)
    opt((Tensor(grad),))
    m, v = 0.1 * grad, 0.001 * grad ** 2
    update = (m / 0.1) / (np.sqrt(v / 0.001) + 1e-6) + 0.01 * w0
    expected = w0 - 0.1 * np.linalg.norm(w0) / np.linalg.norm(update) * update
    np.testing.assert_allclose(net.weight.asnumpy(), expected, rtol=1e-5, atol=1e-6)
