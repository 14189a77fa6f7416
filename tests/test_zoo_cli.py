"""``ms-suite list`` and ``ms-suite convert-weights`` as a user runs them."""
import json

import pytest
import torch

from conftest import cli
from ms_suite.models import list_models
from torch_reference import torch_resnet

pytestmark = pytest.mark.slow  # end-to-end: trains or runs the CLI in a subprocess


def test_list_shows_every_model_with_size_flops_recipes_reference(cache_env):
    entries = {e["name"]: e for e in json.loads(cli("list", "--json").stdout)}
    assert set(entries) == set(list_models())
    r50 = entries["resnet50"]
    assert r50["params_m"] == 25.56 and abs(r50["gflops"] - 8.18) < 0.01
    assert "configs/resnet/resnet50_imagenet.yaml" in r50["recipes"]
    assert "76.130" in r50["reference"] and "torchvision" in r50["reference"]
    assert "configs/quickstart.yaml" in entries["resnet18_cifar"]["recipes"]
    table = cli("list").stdout
    assert "GFLOPs" in table and "resnet152" in table


def test_convert_weights_cli_then_pretrained_recipe(tmp_path, cache_env):
    model = torch_resnet("resnet18", num_classes=10)
    src, dst = tmp_path / "r18.pth", tmp_path / "r18.ckpt"
    torch.save(model.state_dict(), src)
    proc = cli("convert-weights", "--from", "torchvision", "--arch", "resnet18", "--src", str(src), "--dst", str(dst))
    assert dst.is_file() and "written" in proc.stdout
    out = cli("eval", "-c", "configs/resnet/resnet18_imagenet.yaml", "--checkpoint", str(dst), "--set",
              "data.name=synthetic", "data.image_size=32", "data.num_classes=10", "data.synthetic_samples=8",
              "eval.batch_size=8")
    assert "top1" in out.stdout
