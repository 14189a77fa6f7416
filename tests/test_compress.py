"""Compression on CPU: each algorithm on a tiny ResNet over digits, from one shared float checkpoint.

Every run applies the algorithm, trains a few steps, converts, exports a MINDIR and writes the
report; the checks read the exported files back.
"""
import json
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from conftest import ROOT, TINY as TINY_TRAIN
from ms_suite.cli.main import main
from ms_suite.compression import REPORT_NAME, compress, use_pretrained
from ms_suite.compression.base import build_algorithm
from ms_suite.compression.compat import MinMaxFakeQuantizer
from ms_suite.compression.distillation import DistillationLoss, freeze
from ms_suite.compression.pruning import remove_block_channels
from ms_suite.compression.report import mindir_stats, read_mindir
from ms_suite.config import load_config
from ms_suite.engine.loss import CrossEntropy, NetWithLoss
from ms_suite.errors import UserError
from ms_suite.models.registry import create_model

QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")
# The shared tiny recipe (width-8 ResNet-18, one epoch) over a small training split: 179 images, 2 steps.
TINY = [*TINY_TRAIN, "data.val_split=0.9"]


def recipe(name: str) -> str:
    return os.path.join(ROOT, "configs", "compress", f"resnet18_digits_{name}.yaml")


@pytest.fixture(scope="module")
def pretrained(tiny_run):
    return str(tiny_run[0] / "checkpoints" / "best.ckpt")


def run(tmp_path, name: str, pretrained: str, *overrides: str) -> dict:
    cfg = load_config(recipe(name), [*TINY, *overrides])
    use_pretrained(cfg, pretrained)
    report = compress(cfg, str(tmp_path / name))
    with open(tmp_path / name / REPORT_NAME) as fh:
        assert json.load(fh) == json.loads(json.dumps(report))
    assert os.path.isfile(report["before"]["file"]) and os.path.isfile(report["after"]["file"])
    assert 0 <= report["after"]["metrics"]["top1"] <= 100
    return report


def exported_names(path: str) -> list:
    return [param.name.split(":")[-1] for param in read_mindir(path).graph.parameter]


# ------------------------------------------------------------------ end to end, one per algorithm

def test_simqat_through_cli(tmp_path, pretrained, capsys):
    out = tmp_path / "simqat"
    assert main(["compress", "-c", recipe("simqat"), "--pretrained", pretrained, "--output-dir", str(out),
                 "--set", *TINY]) == 0
    report = json.loads((out / REPORT_NAME).read_text())
    assert report["after"]["fake_quant_nodes"] > 0 and report["before"]["fake_quant_nodes"] == 0
    assert report["after"]["params"] == report["before"]["params"]  # same weights, stored with INT8 scales
    assert report["after"]["weights_mb"] < 0.3 * report["before"]["weights_mb"]
    bits = {row["layer"]: row["weight_bits"] for row in report["layers"]}
    assert bits["layer1.0.conv1"] == 8 and bits["fc"] == 8
    assert "fake-quant network" in " ".join(report["notes"])
    printed = capsys.readouterr().out
    assert "weights at bit-width MB" in printed and "layer1.0.conv1" in printed
    assert (out / "rewritten_network").is_dir() and not os.path.isdir(os.path.join(ROOT, "rewritten_network"))


def test_slb_2bit(tmp_path, pretrained):
    report = run(tmp_path, "slb", pretrained, "compression.slb.weight_bits=2")
    assert report["after"]["fake_quant_nodes"] > 0
    rows = {row["layer"]: row for row in report["layers"]}
    assert rows["layer2.1.conv2"]["weight_bits"] == 2 and rows["layer2.1.conv2"]["activation_bits"] == 32
    assert report["after"]["weights_mb"] < 0.2 * report["before"]["weights_mb"]


def test_scop_removes_channels(tmp_path, pretrained):
    report = run(tmp_path, "scop", pretrained)
    assert report["after"]["params"] < 0.7 * report["before"]["params"]
    assert report["after"]["flops"] < 0.7 * report["before"]["flops"]
    rows = {row["layer"]: row for row in report["layers"]}
    assert rows["layer3.0.conv1"]["channels_after"] == 32 - int(0.45 * 32)
    assert rows["layer3.0.conv2"]["channels_after"] == 32  # block outputs keep the residual width
    assert (tmp_path / "scop" / "knockoff" / "summary.json").is_file()


def test_unipruner_prunes_and_exports_plain_names(tmp_path, pretrained):
    report = run(tmp_path, "unipruner", pretrained, "compression.unipruner.pruning_step=4",
                 "compression.unipruner.filter_lower_threshold=4")
    assert report["after"]["params"] < 0.7 * report["before"]["params"]
    names = exported_names(report["after"]["file"])
    assert "conv1.weight" in names and not any(name.startswith("masked_") for name in names)
    assert mindir_stats(report["after"]["file"])[0] == report["after"]["params"]


def test_distilled_student_trains(tmp_path, pretrained):
    teacher = tmp_path / "teacher.yaml"
    teacher.write_text(f"base: [{QUICKSTART}]\n"
                       "model: {kwargs: {base_width: 8}}\n")
    report = run(tmp_path, "distill", pretrained, "model.kwargs.base_width=4",
                 f"compression.distill.teacher_config={teacher}")
    summary = json.loads((tmp_path / "distill" / "summary.json").read_text())
    assert summary["steps"] > 0 and summary["metrics"]["loss"] == pytest.approx(report["after"]["metrics"]["loss"])
    assert report["after"]["params"] < 0.3 * report["before"]["params"]


# ------------------------------------------------------------------ building blocks

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


def test_missing_pretrained_and_algorithm(tmp_path, pretrained, capsys):
    with pytest.raises(UserError, match="no such checkpoint"):
        use_pretrained(_cfg("simqat"), str(tmp_path / "nope.ckpt"))
    assert main(["compress", "-c", QUICKSTART, "--pretrained", pretrained, "--output-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: the recipe sets no compression.algorithm; choose one of distill, scop, simqat, slb, unipruner "
        "(e.g. --set compression.algorithm=simqat)")
