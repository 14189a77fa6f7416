"""torchvision ResNet weights convert to MindSpore and reproduce torch's eval logits."""
import logging
import re
import sys

import mindspore as ms
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from ms_suite.errors import UserError
from ms_suite.models.registry import create_model
from model_zoo.resnet import convert_torchvision_resnet
from ms_suite.models.weights import load_pretrained
from torch_reference import torch_resnet

NUM_CLASSES = 10


def _randomised(arch: str) -> torch.nn.Module:
    """Reference model with random weights and BN statistics, so every tensor matters."""
    torch.manual_seed(0)
    model = torch_resnet(arch, NUM_CLASSES)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
        model.fc.bias.normal_(0, 0.5)
    return model.eval()


@pytest.fixture(scope="module", params=["resnet18", "resnet50"])
def converted(request, tmp_path_factory):
    """(arch, torch model, dir) with torch weights ``w.pth``/``w.safetensors`` converted to ``<fmt>.ckpt``."""
    arch, tmp = request.param, tmp_path_factory.mktemp(request.param)
    model = _randomised(arch)
    state = model.state_dict()
    torch.save(state, tmp / "w.pth")
    save_file({k: v.numpy() for k, v in state.items()}, str(tmp / "w.safetensors"))
    for fmt in ("pth", "safetensors"):
        summary = convert_torchvision_resnet(str(tmp / f"w.{fmt}"), str(tmp / f"{fmt}.ckpt"), arch)
        assert summary == {"num_params": sum(p.numel() for p in model.parameters()),
                           "num_classes": NUM_CLASSES, "arch": arch}
    return arch, model, tmp


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_logits_match_torch(converted, fmt):
    arch, model, tmp = converted
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    net = create_model(arch, num_classes=NUM_CLASSES, pretrained=str(tmp / f"{fmt}.ckpt"))
    net.set_train(False)
    got = net(ms.Tensor(x)).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_other_num_classes_drops_classifier(converted, caplog):
    arch, _, tmp = converted
    with caplog.at_level(logging.INFO, logger="ms_suite"):
        net = create_model(arch, num_classes=3, pretrained=str(tmp / "pth.ckpt"))
    assert net.fc.weight.shape == (3, net.fc.in_channels)
    lines = [r.getMessage() for r in caplog.records if "classifier" in r.getMessage()]
    assert len(lines) == 1 and "fc." in lines[0]
    trained = ms.load_checkpoint(str(tmp / "pth.ckpt"))["conv1.weight"].asnumpy()
    np.testing.assert_array_equal(net.conv1.weight.asnumpy(), trained)


def test_training_checkpoint_extras_ignored(converted, tmp_path):
    arch, _, tmp = converted
    saved = ms.load_checkpoint(str(tmp / "pth.ckpt"))
    extras = [{"name": f"moments.{n}", "data": p} for n, p in list(saved.items())[:3]]
    extras += [{"name": "global_step", "data": ms.Tensor([7], ms.int32)},
               {"name": "learning_rate", "data": ms.Tensor(0.1, ms.float32)}]
    path = str(tmp_path / "train.ckpt")
    ms.save_checkpoint([{"name": n, "data": p} for n, p in saved.items()] + extras, path,
                       append_dict={"epoch_num": 3, "arch": arch})
    net = create_model(arch, num_classes=NUM_CLASSES)
    load_pretrained(net, path, None)
    np.testing.assert_array_equal(net.fc.bias.asnumpy(), saved["fc.bias"].asnumpy())


def test_wrong_architecture_is_user_error(converted, tmp_path):
    arch, _, tmp = converted
    other = "resnet50" if arch == "resnet18" else "resnet18"
    with pytest.raises(UserError, match=f"does not fit model '{other}'"):
        create_model(other, num_classes=NUM_CLASSES, pretrained=str(tmp / "pth.ckpt"))
    with pytest.raises(UserError, match=rf"w\.safetensors: tensor '[\w.]+' has shape .* but {other} expects"):
        convert_torchvision_resnet(str(tmp / "w.safetensors"), str(tmp_path / "x.ckpt"), other)


def test_bad_checkpoint_files_name_path(tmp_path):
    net = create_model("resnet18", num_classes=NUM_CLASSES, base_width=8)
    ms.save_checkpoint(net, str(tmp_path / "good.ckpt"))
    data = (tmp_path / "good.ckpt").read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    for path in (str(truncated), str(tmp_path / "missing.ckpt")):
        with pytest.raises(UserError, match=re.escape(path)):
            load_pretrained(net, path, None)


def test_safetensors_needs_no_torch(converted, tmp_path, monkeypatch):
    arch, _, tmp = converted
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(UserError, match="needs PyTorch"):
        convert_torchvision_resnet(str(tmp / "w.pth"), str(tmp_path / "x.ckpt"), arch)
    convert_torchvision_resnet(str(tmp / "w.safetensors"), str(tmp_path / "x.ckpt"), arch)
