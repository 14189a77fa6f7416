"""Deployable files: every export is run in its own runtime (MINDIR: mindspore.load + GraphCell;
ONNX: ONNX Runtime) and compared with the network; ONNX files carry names and a dynamic batch axis;
BERT's exact GELU reaches ONNX as Erf and matches Hugging Face."""
import json
import os
import stat

import mindspore as ms
import numpy as np
import onnx
import pytest
import torch
import transformers
from onnx import numpy_helper

import ms_suite
from conftest import TINY, cli
from ms_suite.deploy import export_model, load_runtime, signature, verify_export
from ms_suite.deploy.verify import check_tolerance
from ms_suite.errors import UserError
from ms_suite.models.registry import model_info

RNG = np.random.default_rng(0)


def resnet(name: str = "resnet18_cifar", size: int = 8):
    net = ms_suite.create_model(name, num_classes=10, in_chans=1, base_width=8)
    return net.set_train(False), "image-classification", (ms.Tensor(np.zeros((1, 1, size, size), np.float32)),)


def bert(name: str = "bert_tiny_cls", **shape):
    net = ms_suite.create_model(name, num_classes=3, **shape)
    zeros = ms.Tensor(np.zeros((1, 12), np.int32))
    return net.set_train(False), model_info(name).task, (zeros, zeros, zeros)


def samples(task: str, batch: int, image_shape: tuple = (1, 8, 8)):
    if task == "image-classification":
        return [RNG.normal(size=(batch, *image_shape)).astype(np.float32)]
    mask = np.ones((batch, 12), np.int32)
    mask[0, 7:] = 0  # padding in the first row
    return [RNG.integers(1, 200, (batch, 12)).astype(np.int32), mask, (np.arange(12) >= 6).astype(np.int32)
            .repeat(batch).reshape(12, batch).T.copy()]


@pytest.mark.slow
@pytest.mark.parametrize("build", [resnet, bert], ids=["resnet", "bert"])
@pytest.mark.parametrize("fmt", ["MINDIR", "ONNX"])
def test_export_parity_at_batch_1_and_5(build, fmt, tmp_path):
    net, task, inputs = build()
    path, axes = export_model(net, inputs, str(tmp_path / "model"), fmt, signature(task))
    assert path.endswith(fmt.lower()) and axes["batch"] == "dynamic"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    verification = verify_export(net, load_runtime(path, fmt), samples(task, 5), repeats=2)
    assert [p.batch for p in verification.parity] == [1, 5]
    for p in verification.parity:
        assert p.max_rel <= 1e-5 and p.top1_agreement == 100.0
    assert verification.within_tolerance


TINY_BERT = dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64)
OTHER_ZOO_SHAPES = {  # every stem, block and head the zoo has, beyond the two above
    "resnet18 (ImageNet stem)": lambda: resnet("resnet18", 32),
    "resnet50 (bottleneck, ImageNet stem)": lambda: resnet("resnet50", 32),
    "resnet50_cifar (bottleneck)": lambda: resnet("resnet50_cifar", 8),
    "bert_token_cls": lambda: bert("bert_token_cls", **TINY_BERT),
    "bert_tiny_pretraining": lambda: bert("bert_tiny_pretraining"),
    "bert_tiny (encoder)": lambda: bert("bert_tiny"),
}


@pytest.mark.slow
@pytest.mark.parametrize("build", OTHER_ZOO_SHAPES.values(), ids=OTHER_ZOO_SHAPES.keys())
def test_every_zoo_shape_exports_with_a_dynamic_batch(build, tmp_path):
    """Both formats, every stem, block and head: the file loads, runs at two batch sizes and matches;
    ONNX outputs carry the task's names."""
    net, task, inputs = build()
    for fmt in ("MINDIR", "ONNX"):
        path, axes = export_model(net, inputs, str(tmp_path / "model"), fmt, signature(task))
        assert axes["batch"] == "dynamic", (fmt, axes)
        if fmt == "ONNX":
            assert [value.name for value in onnx.load(path).graph.output] == list(signature(task).outputs)
        verification = verify_export(net, load_runtime(path, fmt), samples(task, 5, inputs[0].shape[1:]))
        assert verification.within_tolerance, (fmt, verification.parity)


def test_onnx_names_and_symbolic_batch(tmp_path):
    net, task, inputs = bert()
    path, axes = export_model(net, inputs, str(tmp_path / "bert.onnx"), "ONNX", signature(task))
    model = onnx.load(path)
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*model.graph.input, *model.graph.output]}
    assert dims == {"input_ids": ["batch", 12], "attention_mask": ["batch", 12], "token_type_ids": ["batch", 12],
                    "logits": ["batch", 3]}
    assert "Erf" in {n.op_type for n in model.graph.node}
    # The sequence axis stays fixed: the position ids are a constant as long as the sequence.
    assert "position" in axes["sequence"] or "depends on the sequence length" in axes["sequence"]


def test_bert_onnx_matches_hugging_face(tmp_path):
    torch.manual_seed(3)
    config = transformers.BertConfig(vocab_size=97, max_position_embeddings=40, hidden_size=32,
                                     num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, num_labels=3)
    reference = transformers.BertForSequenceClassification(config).eval()
    folder = tmp_path / "hf"
    reference.save_pretrained(folder)
    net = ms_suite.create_model("bert_cls", num_classes=3, pretrained=str(folder)).set_train(False)
    zeros = ms.Tensor(np.zeros((1, 12), np.int32))
    path, _ = export_model(net, (zeros, zeros, zeros), str(tmp_path / "bert.onnx"), "ONNX",
                           signature("text-classification"))
    ids, mask, types = samples("text-classification", 4)
    ids = ids % 97
    with torch.no_grad():
        expected = reference(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                             token_type_ids=torch.tensor(types, dtype=torch.long)).logits.numpy()
    got = load_runtime(path, "ONNX").run(ids, mask, types)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_corrupted_export_is_caught(tmp_path):
    net, task, inputs = resnet()
    path, _ = export_model(net, inputs, str(tmp_path / "r.onnx"), "ONNX", signature(task))
    model = onnx.load(path)
    weight = next(t for t in model.graph.initializer if t.name == "fc.weight")
    corrupted = numpy_helper.to_array(weight).copy()
    corrupted[0] *= 1.01  # one class's row off by 1%
    weight.CopyFrom(numpy_helper.from_array(corrupted, "fc.weight"))
    onnx.save(model, path)
    verification = verify_export(net, load_runtime(path, "ONNX"), samples(task, 4), repeats=1)
    assert not verification.within_tolerance
    with pytest.raises(UserError, match=r"^ONNX export .* fails verification at batch \d: max relative error"):
        check_tolerance(verification, "ONNX", path)


@pytest.mark.slow
def test_export_cli_verifies_and_writes_the_manifest(tiny_run, tmp_path):
    out, _ = tiny_run
    ckpt = str(out / "checkpoints" / "best.ckpt")
    target = tmp_path / "digits.onnx"
    proc = cli("export", "-c", "configs/quickstart.yaml", "--checkpoint", ckpt, "--output", str(target),
               "--set", *TINY)
    assert "top-1 agreement" in proc.stdout and "100.0%" in proc.stdout
    manifest = json.loads((tmp_path / "digits.onnx.json").read_text())
    assert manifest["format"] == "ONNX" and manifest["bytes"] == os.path.getsize(target)
    assert manifest["inputs"] == [{"name": "image", "dtype": "float", "shape": ["batch", 1, 8, 8]}]
    assert manifest["outputs"] == [{"name": "logits", "dtype": "float", "shape": ["batch", 10]}]
    assert [p["batch"] for p in manifest["parity"]] == [1, 128] and manifest["within_tolerance"]
    assert all(p["max_rel"] <= 1e-5 and p["top1_agreement"] == 100 for p in manifest["parity"])
    assert manifest["source"]["step"] > 0 and manifest["mindspore"] == ms.__version__
    assert set(manifest["latency_ms"]) == {"1", "128"}
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644


@pytest.mark.parametrize("extra, message", [
    (["--format", "AIR", "--output", "m.air"], "error: --format AIR needs runtime.device=Ascend"),
    (["--output", "m.air"], "error: --format AIR needs runtime.device=Ascend"),
    (["--format", "MINDIR", "--output", "m.onnx"], "error: --output m.onnx ends in .onnx but --format is MINDIR"),
])
def test_export_refusals_are_one_line(tmp_path, extra, message):
    proc = cli("export", "-c", "configs/quickstart.yaml", "--checkpoint", str(tmp_path / "none.ckpt"), *extra,
               "--set", "runtime.device=CPU", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith(message) and len(proc.stderr.splitlines()) == 1
