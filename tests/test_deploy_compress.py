"""Compression ends in deployable, verified ONNX files: SimQAT's INT8 model (Q/DQ with the learned
ranges, run by ONNX Runtime's INT8 kernels), the post-training INT8 baseline, and `ms-suite compare`
over the run folders."""
import json
import os
import tempfile

import mindspore as ms
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import ms_suite
from conftest import FLOAT_FLOOR, cli
from ms_suite.compression.base import build_algorithm
from ms_suite.compression.compat import rewrite_workspace
from ms_suite.config import load_config
from ms_suite.data import dataset_info
from ms_suite.deploy import Parity, eval_samples, export_model, onnx_session, signature, train_batches
from ms_suite.deploy.int8 import QuantPoints, int8_tolerance, learned_range, qat_to_qdq
from ms_suite.engine.tasks import get_task
from ms_suite.errors import UserError
from ms_suite.models import model_info
from ms_suite.deploy.onnx_graph import Graph, Range, crop_padding_taps, fold_batchnorm, weight_range

FLOAT_OPS = {"BatchNormalization", "Conv", "Relu", "Add", "Gemm"}  # what must not run in float between INT8 ops


@pytest.mark.slow
def test_simqat_int8_onnx_is_smaller_and_accurate(simqat_run):
    out, report, _ = simqat_run
    before, after = report["before"], report["after"]
    int8 = out / "compressed_int8.onnx"
    assert after["deployed_file"] == str(int8) and before["deployed_file"] == str(out / "reference.onnx")
    # Accuracy of the files over the whole eval split, from ONNX Runtime.
    assert after["metrics"]["samples"] == before["metrics"]["samples"] == 360
    assert before["metrics"]["top1"] == pytest.approx(before["network_metrics"]["top1"], abs=0.3)  # fp32 file
    # The INT8 file of a model that learned keeps its accuracy (one image is 0.28 points).
    assert before["metrics"]["top1"] >= FLOAT_FLOOR
    assert after["metrics"]["top1"] >= before["metrics"]["top1"] - 2.0
    # The INT8 file computes what the fake-quant network computes (a requantization step landing on
    # the other side of a rounding boundary can flip a prediction; the full model agrees on all, see
    # docs/results/deploy.md).
    assert abs(after["metrics"]["top1"] - after["network_metrics"]["top1"]) <= 3
    manifest = json.loads((out / "compressed_int8.onnx.json").read_text())
    assert manifest["within_tolerance"] and all(p["top1_agreement"] >= 95 for p in manifest["parity"])
    assert after["size_mb"] == pytest.approx(os.path.getsize(int8) / 1e6)
    assert after["size_mb"] < 0.4 * before["size_mb"]  # INT8 weights (scales and BN stay float)
    model = onnx.load(str(int8))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = {t.name: t for t in model.graph.initializer}
    assert weights["layer1.0.conv1.weight_int8"].data_type == onnx.TensorProto.INT8
    ptq = report["baselines"]["ptq_int8"]
    assert os.path.isfile(ptq["file"]) and ptq["metrics"]["samples"] == 360
    assert ptq["metrics"]["top1"] >= before["metrics"]["top1"] - 10


def optimized_ops(path) -> list:
    """The operators of the graph ONNX Runtime runs for the file at ``path``."""
    with tempfile.TemporaryDirectory() as tmp:
        optimized = os.path.join(tmp, "opt.onnx")
        onnx_session(str(path), 1, optimized_path=optimized)
        return [n.op_type for n in onnx.load(optimized).graph.node]


def assert_int8_structure(model, ops: list) -> None:
    """No BatchNorm left in the file; ONNX Runtime runs every convolution, residual Add and the
    classifier as an INT8 op, with no float layer between them (structure, not timing)."""
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    assert ops.count("QLinearConv") == 20 and ops.count("QLinearAdd") == 8 and ops.count("QGemm") == 1
    assert not FLOAT_OPS & set(ops), sorted(FLOAT_OPS & set(ops))
    assert ops.count("Transpose") <= 2 and ops.count("QuantizeLinear") <= 2  # NHWC end to end


@pytest.mark.slow
def test_onnx_runtime_runs_int8_convolutions(simqat_run):
    out, _, _ = simqat_run
    path = out / "compressed_int8.onnx"
    assert_int8_structure(onnx.load(str(path)), optimized_ops(path))


def tiny_float_onnx(tmp_path):
    net = ms_suite.create_model("resnet18_cifar", num_classes=10, in_chans=1, base_width=8).set_train(False)
    inputs = (ms.Tensor(np.zeros((1, 1, 8, 8), np.float32)),)
    path, _ = export_model(net, inputs, str(tmp_path / "float.onnx"), "ONNX", signature("image-classification"))
    return path


def test_folding_and_cropping_keep_the_function(tmp_path):
    """BatchNorm folded into the convolutions and kernel taps that only meet padding cropped (at 8x8
    input, layer4's 3x3 convolutions see 1x1 inputs): the float graph computes the same."""
    path = tiny_float_onnx(tmp_path)
    model = onnx.load(path)
    graph = Graph(model)
    cropped = crop_padding_taps(graph)
    fold_batchnorm(graph)
    graph.finish()
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    assert sorted(cropped) == ["layer4.0.conv1.weight", "layer4.0.conv2.weight", "layer4.1.conv1.weight",
                               "layer4.1.conv2.weight"]
    assert graph.array("layer4.1.conv2.weight").shape[2:] == (1, 1)
    assert graph.array("layer4.0.conv1.weight").shape[2:] == (2, 2)  # stride 2 over a 2x2 input
    folded = tmp_path / "folded.onnx"
    onnx.save(model, str(folded))
    images = np.random.default_rng(0).normal(size=(4, 1, 8, 8)).astype(np.float32)
    expected = onnx_session(path).run(None, {"image": images})[0]
    got = onnx_session(str(folded)).run(None, {"image": images})[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_int8_graph_runs_int8_ops_end_to_end(tmp_path):
    """SimQAT's quantization points on a (random) float ResNet-18: BatchNorm folded, every layer an
    INT8 op in ONNX Runtime's optimized graph."""
    model = onnx.load(tiny_float_onnx(tmp_path))
    weights = {n.input[1]: n for n in model.graph.node if n.op_type in ("Conv", "Gemm")}
    activation = {"input": None, "output": Range(np.float32(0), np.float32(4), False), "weight": None}
    layers = {name: {"input": Range(np.float32(-3), np.float32(3), False) if name in ("conv1.weight", "fc.weight")
                     else None, "output": None,
                     "weight": weight_range(numpy_helper.to_array(next(t for t in model.graph.initializer
                                                                       if t.name == name)))}
              for name in weights if "downsample" not in name}
    cells = ["ReLU"] + [f"layer{i}.{j}.{relu}" for i in range(1, 5) for j in range(2) for relu in ("ReLU", "ReLU_1")]
    batches = [{"image": np.random.default_rng(k).normal(size=(8, 1, 8, 8)).astype(np.float32)} for k in range(2)]
    qat_to_qdq(model, QuantPoints(layers, {name: activation for name in cells}), batches)
    onnx.checker.check_model(model)
    path = tmp_path / "int8.onnx"
    onnx.save(model, str(path))
    assert_int8_structure(model, optimized_ops(path))


def test_learned_range_matches_the_fake_quantizer_grid():
    """INT8 zero point 0 with scale 2h/255 is the fake quantizer's symmetric [-h, h] grid."""
    from ms_suite.compression.compat import MinMaxFakeQuantizer

    weights = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    quantizer = MinMaxFakeQuantizer(num_bits=8, symmetric=True, num_channels=4)
    quantizer.set_train(True)
    fake = quantizer(ms.Tensor(weights)).asnumpy()
    scale, zero_point = learned_range(quantizer).scale_zero_point()
    assert zero_point.dtype == np.int8 and not zero_point.any()
    codes = np.clip(np.round(weights / scale[:, None, None, None]), -128, 127)
    np.testing.assert_allclose(codes * scale[:, None, None, None], fake, rtol=0, atol=1e-6)

    activations = np.random.default_rng(1).normal(loc=1.0, size=(2, 5)).astype(np.float32)
    act = MinMaxFakeQuantizer(num_bits=8, symmetric=False)
    act.set_train(True)
    fake = act(ms.Tensor(activations)).asnumpy()
    scale, zero_point = learned_range(act).scale_zero_point()
    codes = np.clip(np.round(activations / scale) + zero_point.astype(np.int32), 0, 255)
    np.testing.assert_allclose((codes - zero_point.astype(np.int32)) * scale, fake, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_compare_reads_run_folders(simqat_run, tmp_path):
    out, report, _ = simqat_run
    png = tmp_path / "cmp.png"
    proc = cli("compare", str(out), "--threads", "1", "--repeats", "2", "--plot", str(png))
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[2:] if line and line[0].isalpha()}
    assert {"float", "SimQAT", "PTQ"} <= set(rows)
    assert float(rows["SimQAT"][2]) == pytest.approx(report["after"]["metrics"]["top1"], abs=0.01)
    assert png.stat().st_size > 10_000
    table = json.loads((tmp_path / "cmp.json").read_text())
    assert [v["name"] for v in table["variants"]] == ["float", "SimQAT INT8", "PTQ INT8"]
    assert all(v["latency_ms"]["32"] > 0 for v in table["variants"])
    bad = cli("compare", str(tmp_path), check=False)
    assert bad.returncode == 2 and "no compression_report.json" in bad.stderr


@pytest.mark.slow
def test_slb_onnx_holds_the_selected_levels(slb_run):
    """SLB's compressed.onnx is the float network with SLB's weight levels, verified at fp32 tolerance."""
    out, report, _ = slb_run
    assert report["after"]["deployed_file"] == str(out / "compressed.onnx")
    manifest = json.loads((out / "compressed.onnx.json").read_text())
    assert manifest["within_tolerance"] and all(p["max_rel"] <= 1e-5 for p in manifest["parity"])
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out / "compressed.onnx")).graph.initializer}
    quantized = [row["layer"] for row in report["layers"] if row["weight_bits"] == 2]
    assert len(quantized) == 17
    levels = np.linspace(-1, 1, 2 ** 2)  # Golden Stick's level grid
    for layer in quantized:
        assert np.abs(weights[f"{layer}.weight"][..., None] - levels).min(axis=-1).max() < 1e-6, layer


def test_int8_tolerance_follows_what_quantization_changes():
    """The INT8 file is held to the fake-quant network within 1.5x what quantization itself changes
    (float weights vs fake-quant), at least rel 0.2, and one more flipped prediction (at least 5%)."""
    quiet = int8_tolerance(Parity(32, max_abs=0.1, max_rel=0.01, top1_agreement=100.0))
    assert (quiet.max_rel, quiet.min_agreement) == (0.2, 95.0)
    noisy = int8_tolerance(Parity(32, max_abs=3.6, max_rel=0.3, top1_agreement=96.875))
    assert noisy.max_rel == pytest.approx(0.45) and noisy.min_agreement == pytest.approx(93.75)


def simqat_network(run_dir, workspace):
    """The fine-tuned SimQAT network of ``run_dir``, rebuilt from its recipe and last checkpoint."""
    cfg = load_config(str(run_dir / "config.yaml"))
    task = get_task(model_info(cfg.model.name).task)
    float_net, _ = task.build_model(cfg, dataset_info(cfg.data))
    with rewrite_workspace(float_net, str(workspace)):
        net = build_algorithm(cfg).golden_stick("CPU").apply(float_net)
    checkpoint = sorted((run_dir / "checkpoints").glob("step_*.ckpt"))[-1]
    not_loaded, _ = ms.load_param_into_net(net, ms.load_checkpoint(str(checkpoint)))
    assert not not_loaded
    return cfg, task, net


@pytest.mark.slow
def test_a_wrong_int8_scale_fails_verification(simqat_run, tmp_path, monkeypatch):
    """The INT8 file of the trained SimQAT network passes verification; with the stem's weight scale
    doubled (a 127-level grid taken for 255) it fails, in one line naming the file."""
    from ms_suite.compression import quantization

    out, _, _ = simqat_run
    cfg, task, net = simqat_network(out, tmp_path / "rewrite")
    info = dataset_info(cfg.data)
    inputs = task.example_inputs(cfg, info, 1)
    samples = eval_samples(cfg, info.num_classes, inputs, 64)
    batches = train_batches(cfg, info.num_classes, "image", 2)

    def write(path):
        plain, _ = task.build_model(cfg, info)
        return quantization.write_int8_onnx(net, plain, task.name, inputs, str(path), batches, samples, {})

    good = write(tmp_path / "good.onnx")
    assert good.verification.within_tolerance
    assert all(p.top1_agreement >= 95 for p in good.verification.parity)
    right = quantization.qat_to_qdq

    def doubled_stem_scale(model, points, calibration):
        model = right(model, points, calibration)
        scale = next(t for t in model.graph.initializer if t.name == "conv1.weight_scale")
        scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * np.float32(2), scale.name))
        return model

    monkeypatch.setattr(quantization, "qat_to_qdq", doubled_stem_scale)
    with pytest.raises(UserError, match=r"^ONNX export .*bad\.onnx fails verification at batch \d+: max relative"):
        write(tmp_path / "bad.onnx")
    manifest = json.loads((tmp_path / "bad.onnx.json").read_text())
    assert not manifest["within_tolerance"] and "fake-quant" in manifest["tolerance"]["basis"]
