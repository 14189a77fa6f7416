"""Compression on CPU: each algorithm on a narrow ResNet-18 over digits, from one shared float model
that really learned (the quickstart recipe at width 8, 8 epochs).

Every run applies the algorithm, fine-tunes, converts, exports a MINDIR and writes the report; the
checks read the exported files back and hold each algorithm to an accuracy bound against the float
model (one seed, the 360-image eval split): SimQAT within 0.5 pt, SCOP and UniPruner within 1 pt,
distillation within 1.5 pt, SLB (whose convolutions restart) far above chance.
"""
import json
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from conftest import FLOAT_FLOOR, ROOT, TINY, check_compression_report, compress_run
from ms_suite.cli.main import main
from ms_suite.compression import REPORT_NAME, compress, use_pretrained
from ms_suite.compression.base import build_algorithm
from ms_suite.compression.compat import CompactSlbQuantizer, MinMaxFakeQuantizer
from ms_suite.compression.distillation import DistillationLoss, freeze
from ms_suite.compression.pruning import remove_block_channels
from ms_suite.compression.report import FAKE_QUANT_OP, mindir_stats, read_mindir
from ms_suite.config import load_config
from ms_suite.engine.callbacks import Callback
from ms_suite.engine.loss import CrossEntropy, NetWithLoss
from ms_suite.errors import UserError
from ms_suite.models.registry import create_model
from ms_suite.runtime.memory import peak_rss_mb

QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")
SLB_FLOOR = 30.0  # three times chance; a width-8 run with this schedule (conftest.SLB_SCHEDULE) reached 48%
DISTILL_EPOCHS = 12  # the width-6 student starts from scratch
# SCOP fine-tunes the pruned width-8 model for 10 epochs (about 5 s each): its inner convolutions keep 5 of
# 8 channels in layer1, and with 2 epochs it ended 1.7-2 pt below the float model; with 10 it ended at or
# above it (0 and +1.9 pt, two seeds).
SCOP_EPOCHS = 10
# A pruned network fine-tunes from the float model's weights, so one epoch brings it close to the float
# model (88-93% in development runs). SCOP's pruned network restarted from random weights was at 54%
# after one epoch and ended only 1.4 pt below the float model after 10 (easy digits): the bound alone
# barely tells the two apart, the first epoch does.
PRUNED_FIRST_EPOCH_FLOOR = 80.0


def recipe(name: str) -> str:
    return os.path.join(ROOT, "configs", "compress", f"resnet18_digits_{name}.yaml")


@pytest.fixture(scope="session")
def pretrained(float_model):
    return float_model[0]


def assert_within(report: dict, points: float) -> None:
    """The compressed model's top-1 is at most ``points`` below the float model's."""
    before, after = report["before"]["metrics"]["top1"], report["after"]["metrics"]["top1"]
    assert before >= FLOAT_FLOOR
    assert after >= before - points, f"{report['algorithm']}: {after:.2f} vs float {before:.2f}"


class EpochEvals(Callback):
    """Eval top-1 after every epoch, one list per training stage (an in-process run's callback)."""

    def __init__(self) -> None:
        self.stages: list = []

    def on_train_begin(self, state) -> None:
        self.stages.append([])

    def on_epoch_end(self, state) -> None:
        self.stages[-1].append(state.metrics["top1"])


def run(tmp_path, name: str, pretrained: str, *overrides: str, callbacks=()) -> dict:
    cfg = load_config(recipe(name), [*TINY, *overrides])
    use_pretrained(cfg, pretrained)
    report = compress(cfg, str(tmp_path / name), callbacks)
    with open(tmp_path / name / REPORT_NAME) as fh:
        assert json.load(fh) == json.loads(json.dumps(report))
    check_compression_report(report)
    return report


def exported_names(path: str) -> list:
    return [param.name.split(":")[-1] for param in read_mindir(path).graph.parameter]


def exported_weights(path: str) -> dict:
    """``{name: array}`` of the float32 parameters stored in a MINDIR."""
    return {param.name.split(":")[-1]: np.frombuffer(param.raw_data, np.float32).reshape(tuple(param.dims))
            for param in read_mindir(path).graph.parameter if param.raw_data}


def weight_fake_quant_layers(path: str) -> list:
    """Layers whose weight feeds a FakeQuantParam node in a MINDIR (activation ones are left out)."""
    model = read_mindir(path)
    params = {param.name for param in model.graph.parameter}
    producers = {node.output[0]: node for node in model.graph.node if node.output}
    layers = []
    for node in model.graph.node:
        source = producers.get(node.input[0]) if FAKE_QUANT_OP in node.op_type else None
        if source is not None and "Load" in source.op_type and source.input[0] in params:
            layers.append(source.input[0].split(":")[-1].rsplit(".", 1)[0])
    return layers


# ------------------------------------------------------------------ end to end, one per algorithm

@pytest.mark.slow
def test_simqat_through_cli(simqat_run):
    out, report, output = simqat_run
    assert_within(report, 0.5)
    assert report["after"]["fake_quant_nodes"] > 0 and report["before"]["fake_quant_nodes"] == 0
    quantized = sorted(row["layer"] for row in report["layers"] if row["weight_bits"] == 8)
    assert sorted(weight_fake_quant_layers(report["after"]["file"])) == quantized and len(quantized) == 18
    assert report["after"]["params"] == report["before"]["params"]  # same weights, stored with INT8 scales
    assert report["after"]["weights_mb"] < 0.3 * report["before"]["weights_mb"]
    bits = {row["layer"]: row["weight_bits"] for row in report["layers"]}
    assert bits["layer1.0.conv1"] == 8 and bits["fc"] == 8
    assert "fake-quant network" in " ".join(report["notes"])
    assert "weights at bit-width MB" in output["stdout"] and "layer1.0.conv1" in output["stdout"]
    assert (out / "rewritten_network").is_dir() and not os.path.isdir(os.path.join(ROOT, "rewritten_network"))


@pytest.mark.slow
def test_slb_2bit(slb_run):
    out, report, _ = slb_run
    assert report["after"]["metrics"]["top1"] >= SLB_FLOOR  # chance is 10%
    assert report["after"]["fake_quant_nodes"] > 0
    rows = {row["layer"]: row for row in report["layers"]}
    assert rows["layer2.1.conv2"]["weight_bits"] == 2 and rows["layer2.1.conv2"]["activation_bits"] == 32
    assert report["after"]["weights_mb"] < 0.2 * report["before"]["weights_mb"]
    # SLB's convert stores each quantized convolution's selected levels as "<cell>.weight_4d".
    quantized = {name: weight for name, weight in exported_weights(report["after"]["file"]).items()
                 if name.endswith(".weight_4d")}
    assert len(quantized) == sum(row["weight_bits"] == 2 for row in rows.values()) > 10
    for name, weight in quantized.items():
        per_channel = max(len(np.unique(channel)) for channel in weight.reshape(weight.shape[0], -1))
        assert per_channel <= 2 ** 2, name
    levels = np.unique(np.concatenate([weight.ravel() for weight in quantized.values()]))
    np.testing.assert_allclose(levels, np.linspace(-1, 1, 2 ** 2), atol=1e-6)  # Golden Stick's level grid


def epoch_top1(run_dir) -> list:
    """Eval top-1 after each epoch of a training stage, from its metrics.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["eval"]["top1"] for row in rows if "eval" in row]


@pytest.mark.slow
def test_scop_removes_channels(tmp_path_factory, float_model):
    out, report, _ = compress_run(tmp_path_factory, float_model, "scop", f"train.epochs={SCOP_EPOCHS}",
                                  "train.batch_size=32")
    assert report["after"]["params"] < 0.7 * report["before"]["params"]
    assert report["after"]["flops"] < 0.7 * report["before"]["flops"]
    rows = {row["layer"]: row for row in report["layers"]}
    assert rows["layer3.0.conv1"]["channels_after"] == 32 - int(0.45 * 32)
    assert rows["layer3.0.conv2"]["channels_after"] == 32  # block outputs keep the residual width
    assert (out / "knockoff" / "summary.json").is_file()
    assert epoch_top1(out / "knockoff")  # the knockoff stage trained and evaluated in its own folder
    fine_tuning = epoch_top1(out)
    assert len(fine_tuning) == SCOP_EPOCHS and fine_tuning[0] >= PRUNED_FIRST_EPOCH_FLOOR, fine_tuning
    assert_within(report, 1.0)


@pytest.mark.slow
def test_unipruner_prunes_and_exports_plain_names(tmp_path, pretrained):
    # UniPruner zeroes the whole cut before the first epoch; at the recipe's lr 0.01 this width-8 model
    # recovered too slowly (1.1-1.7 pt below after 6-10 epochs), at 0.03 it ends above the float model.
    evals = EpochEvals()
    report = run(tmp_path, "unipruner", pretrained, "train.epochs=6", "train.batch_size=32", "train.lr=0.03",
                 "compression.unipruner.target_sparsity=0.7", "compression.unipruner.pruning_step=4",
                 "compression.unipruner.filter_lower_threshold=4", callbacks=[evals])
    assert report["after"]["params"] < 0.7 * report["before"]["params"]
    names = exported_names(report["after"]["file"])
    assert "conv1.weight" in names and not any(name.startswith("masked_") for name in names)
    assert mindir_stats(report["after"]["file"])[0] == report["after"]["params"]
    assert evals.stages[0][0] >= PRUNED_FIRST_EPOCH_FLOOR, evals.stages
    assert_within(report, 1.0)


@pytest.mark.slow
def test_distilled_student_trains(tmp_path_factory, tmp_path, float_model):
    teacher = tmp_path / "teacher.yaml"
    teacher.write_text(f"base: [{QUICKSTART}]\n"
                       "model: {kwargs: {base_width: 8}}\n")
    out, report, _ = compress_run(tmp_path_factory, float_model, "distill", "model.kwargs.base_width=6",
                                  f"train.epochs={DISTILL_EPOCHS}", "train.batch_size=32",
                                  f"compression.distill.teacher_config={teacher}")
    assert_within(report, 1.5)
    summary = json.loads((out / "summary.json").read_text())
    trained = ms.load_checkpoint(summary["final_checkpoint"])
    original = ms.load_checkpoint(float_model[0])
    teacher_params = {name[len("teacher."):]: value for name, value in trained.items() if name.startswith("teacher.")}
    assert teacher_params and all(np.array_equal(value.asnumpy(), original[name].asnumpy())
                                  for name, value in teacher_params.items())
    assert summary["steps"] > 0 and summary["metrics"]["loss"] == pytest.approx(report["after"]["metrics"]["loss"])
    assert report["after"]["params"] < 0.6 * report["before"]["params"]


# ------------------------------------------------------------------ building blocks

@pytest.mark.slow
def test_golden_stick_leaves_the_warning_filters_alone():
    """Importing the algorithms keeps Python's default filters: third-party deprecation notices stay hidden."""
    code = ("import warnings, ms_suite.compression.quantization, ms_suite.compression.pruning\n"
            "print(sum(f[0] == 'always' and f[2] is DeprecationWarning for f in warnings.filters))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split()[-1] == "0", proc.stdout


def test_minmax_fake_quantizer_grid_and_straight_through():
    quantizer = MinMaxFakeQuantizer(num_bits=4, symmetric=False)
    quantizer.set_train(True)
    x = Tensor(np.linspace(-1.0, 3.0, 101, dtype=np.float32))
    out = quantizer(x).asnumpy()
    assert quantizer.mins() == [-1.0] and quantizer.maxs() == [3.0]
    assert len(np.unique(out)) <= 16 and np.abs(out - x.asnumpy()).max() <= (4.0 / 15) / 2 + 1e-6
    quantizer.set_train(False)
    wide = Tensor(np.array([-5.0, 0.5, 5.0], np.float32))
    grad = ms.grad(lambda t: quantizer(t).sum())(wide).asnumpy()
    assert grad.tolist() == [0.0, 1.0, 0.0]  # straight through inside the range, zero outside


def test_remove_block_channels_matches_zeroed_channels():
    """Removing channels equals silencing them: zero their BN scale/shift, compare outputs."""
    ms.set_seed(0)
    net = create_model("resnet18_cifar", num_classes=10, in_chans=1, base_width=8).set_train(False)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32))
    keep = {"layer1.0.conv1": np.array([0, 2, 5, 7]), "layer3.1.conv1": np.arange(0, 32, 2),
            "layer3.1.conv2": np.arange(10)}  # a block-output conv: ignored
    bn = dict(net.cells_and_names())["layer1.0.bn1"]
    bn_deep = dict(net.cells_and_names())["layer3.1.bn1"]
    for cell, kept in ((bn, keep["layer1.0.conv1"]), (bn_deep, keep["layer3.1.conv1"])):
        dropped = np.setdiff1d(np.arange(cell.gamma.shape[0]), kept)
        for name in ("gamma", "beta"):
            value = getattr(cell, name).asnumpy()
            value[dropped] = 0
            getattr(cell, name).set_data(Tensor(value))
    expected = net(x).asnumpy()
    params = sum(p.size for p in net.trainable_params())
    assert remove_block_channels(net, keep) == ["layer1.0.conv1", "layer3.1.conv1"]
    np.testing.assert_allclose(net(x).asnumpy(), expected, rtol=1e-4, atol=1e-5)
    assert sum(p.size for p in net.trainable_params()) < params
    names = [p.name for p in net.get_parameters()]
    assert "layer1.0.conv1.weight" in names and "layer1.0.bn1.moving_mean" in names
    assert dict(net.cells_and_names())["layer1.0.conv2"].weight.shape == (8, 4, 3, 3)


def test_distillation_loss_terms():
    ms.set_seed(0)
    student, teacher = nn.Dense(4, 3), nn.Dense(4, 3)
    x = Tensor(np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32))
    labels = Tensor(np.array([0, 1, 2, 1, 0], np.int32))
    hard = NetWithLoss(student, CrossEntropy(3))
    ce = float(hard(x, labels).asnumpy())
    assert float(DistillationLoss(hard, freeze(teacher), 2.0, 0.0)(x, labels).asnumpy()) == pytest.approx(ce)
    twin = nn.Dense(4, 3)
    twin.weight.set_data(student.weight.data.copy())
    twin.bias.set_data(student.bias.data.copy())
    same = DistillationLoss(hard, freeze(twin), 2.0, 0.5)(x, labels)
    assert float(same.asnumpy()) == pytest.approx(0.5 * ce, rel=1e-5)  # identical teacher: KL is 0
    assert not any(p.requires_grad for p in twin.get_parameters())
    assert all(p.name.startswith("teacher.") for p in twin.get_parameters())


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def test_distillation_loss_matches_numpy():
    """A different teacher, alpha=0.3 and T=3 against the formula written out in numpy (float64)."""
    ms.set_seed(0)
    student, teacher = nn.Dense(4, 3), nn.Dense(4, 3)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 1, 0, 2], np.int32)
    alpha, temperature = 0.3, 3.0
    s_logits = x.astype(np.float64) @ student.weight.asnumpy().T + student.bias.asnumpy()
    t_logits = x.astype(np.float64) @ teacher.weight.asnumpy().T + teacher.bias.asnumpy()
    assert np.abs(s_logits - t_logits).max() > 0.1
    hard = -_log_softmax(s_logits)[np.arange(6), labels].mean()
    log_p_teacher, log_p_student = _log_softmax(t_logits / temperature), _log_softmax(s_logits / temperature)
    kl = (np.exp(log_p_teacher) * (log_p_teacher - log_p_student)).sum(axis=-1).mean()
    expected = (1 - alpha) * hard + alpha * temperature ** 2 * kl
    loss = DistillationLoss(NetWithLoss(student, CrossEntropy(3)), freeze(teacher), temperature, alpha)
    assert float(loss(Tensor(x), Tensor(labels)).asnumpy()) == pytest.approx(expected, rel=1e-5)
    assert kl > 0.01  # the teacher term contributes


def _conv_bn(seed: int) -> nn.Cell:
    ms.set_seed(seed)
    return nn.SequentialCell(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Dense(4 * 8 * 8, 3))


def _distill_steps(alpha: float, steps: int = 3):
    """(student, teacher) parameters after ``steps`` SGD steps of distillation from fixed starts."""
    student, teacher = _conv_bn(0), _conv_bn(1)
    rng = np.random.default_rng(3)
    x = Tensor(rng.standard_normal((8, 1, 8, 8)).astype(np.float32))
    labels = Tensor(rng.integers(0, 3, 8).astype(np.int32))
    loss = DistillationLoss(NetWithLoss(student, CrossEntropy(3)), freeze(teacher), 2.0, alpha)
    step = nn.TrainOneStepCell(loss, nn.SGD(student.trainable_params(), 0.1)).set_train(True)
    for _ in range(steps):
        step(x, labels)
    return ({p.name: p.asnumpy().copy() for p in student.get_parameters()},
            {p.name: p.asnumpy().copy() for p in teacher.get_parameters()})


def test_distillation_trains_the_student_only():
    untouched = {p.name: p.asnumpy() for p in freeze(_conv_bn(1)).get_parameters()}
    student_half, teacher_half = _distill_steps(0.5)
    student_hard, _ = _distill_steps(0.0)
    assert {name[len("teacher."):]: value for name, value in teacher_half.items()}.keys() == untouched.keys()
    for name, value in teacher_half.items():  # weights and BatchNorm statistics
        np.testing.assert_array_equal(value, untouched[name[len("teacher."):]])
    differ = [name for name in student_half if not np.allclose(student_half[name], student_hard[name], atol=1e-6)]
    assert "0.weight" in differ and "4.weight" in differ


def test_compact_slb_quantizer_matches_golden_stick():
    """Same forward and gradient as Golden Stick's SLB quantizer while the temperature rises, once it
    has ended, and in eval mode."""
    from mindspore_gs.quantization.slb.slb_fake_quantizer import SlbFakeQuantizerPerLayer

    rng = np.random.default_rng(4)
    logits = Tensor(rng.standard_normal((6, 3, 3, 3, 4)).astype(np.float32))
    upstream = Tensor(rng.standard_normal((6, 3, 3, 3)).astype(np.float32))
    for training, ended in ((True, False), (True, True), (False, False)):
        results = []
        for quantizer in (SlbFakeQuantizerPerLayer(2), CompactSlbQuantizer(SlbFakeQuantizerPerLayer(2))):
            quantizer.set_temperature(2.5)
            if ended:
                quantizer.set_temperature_end_flag()
            quantizer.set_train(training)
            grad = ms.grad(lambda t, q=quantizer: (q(t) * upstream).sum())(logits)
            results.append((quantizer(logits).asnumpy(), grad.asnumpy(), quantizer.cls_name))
        (out, grad, name), (compact_out, compact_grad, compact_name) = results
        np.testing.assert_allclose(compact_out, out, atol=2e-6)
        np.testing.assert_allclose(compact_grad, grad, atol=5e-6)
        assert compact_name == name  # Golden Stick's TemperatureScheduler finds quantizers by this name
        assert np.abs(grad).max() > 0.1 if training and not ended else not grad.any()


def test_peak_rss_is_the_kernels_high_water_mark():
    with open("/proc/self/status") as fh:
        status = dict(line.split(":", 1) for line in fh)
    hwm_mb = int(status["VmHWM"].split()[0]) / 1024
    assert abs(peak_rss_mb() - hwm_mb) < 8 and hwm_mb > 50


# ------------------------------------------------------------------ refusals, before any work

def _cfg(name: str, *overrides: str):
    return load_config(recipe(name), [*TINY, *overrides])


@pytest.mark.parametrize("name, device, overrides, message", [
    ("simqat", "Ascend", ["model.pretrained=x.ckpt"], "unsupported on Ascend"),
    ("slb", "Ascend", ["model.pretrained=x.ckpt"], "unsupported on Ascend"),
    ("slb", "CPU", ["model.pretrained=x.ckpt", "compression.slb.enable_act_quant=true"], "needs GPU"),
    ("slb", "CPU", ["model.pretrained=x.ckpt", "compression.slb.t_end_time=0.1"], "must not be below"),
    ("scop", "CPU", [], "pass --pretrained"),
    ("scop", "CPU", ["model.pretrained=x.ckpt", "model.name=bert_base"], "supports resnet models"),
    ("distill", "CPU", ["compression.distill.teacher_config=null"], "teacher_config is not set"),
    ("distill", "CPU", [f"compression.distill.teacher_config={QUICKSTART}",
                        "compression.distill.teacher_checkpoint=missing.ckpt"], "missing.ckpt not found"),
])
def test_refusals(name, device, overrides, message):
    with pytest.raises(UserError, match=message):
        build_algorithm(_cfg(name, *overrides)).check(device)


def test_missing_pretrained_and_algorithm(tmp_path, capsys):
    pretrained = tmp_path / "float.ckpt"
    pretrained.write_bytes(b"")  # never read: the missing algorithm is refused first
    with pytest.raises(UserError, match="no such checkpoint"):
        use_pretrained(_cfg("simqat"), str(tmp_path / "nope.ckpt"))
    assert main(["compress", "-c", QUICKSTART, "--pretrained", str(pretrained), "--output-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: the recipe sets no compression.algorithm; choose one of distill, scop, simqat, slb, unipruner "
        "(e.g. --set compression.algorithm=simqat)")
