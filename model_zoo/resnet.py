"""ResNet v1.5 in MindSpore with torchvision's layout, parameter names and initialisation.

Parameter names map 1:1 to torchvision's (``layer1.0.conv1.weight``; BatchNorm ``weight``/``bias``/
``running_mean``/``running_var`` become ``gamma``/``beta``/``moving_mean``/``moving_variance``),
so :func:`convert_torchvision_resnet` (``ms-suite convert-weights --from torchvision``) is a rename.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Type, Union

import mindspore as ms
import numpy as np
from mindspore import nn, ops
from mindspore.common.initializer import HeNormal, HeUniform, Uniform

from ms_suite.errors import UserError
from ms_suite.models.registry import create_model, register_model
from ms_suite.models.weights import SHOWN, read_torch_state
from ms_suite.registry import CONVERTERS

_TORCHVISION = "% top-1 ImageNet (torchvision IMAGENET1K_V1)"
_KUANGLIU = "% top-1 CIFAR-10 (kuangliu/pytorch-cifar README)"
_IMAGENET = dict(input_size=(3, 224, 224), num_classes=1000)
_CIFAR = dict(input_size=(3, 32, 32), num_classes=10)


class ZeroPaddedMaxPool(nn.Cell):
    """torch's ``MaxPool2d(3, 2, padding=1)`` on post-ReLU inputs (>= 0, so zero padding equals torch's
    -inf padding): a row and a column of zeros on each side, then a valid 3x3/2 max pool.

    Both forms pad with exact zeros and pool with the same kernel, so outputs and gradients are bit for
    bit those of ``ZeroPad2d(1)`` + ``MaxPool2d(3, 2)`` run eagerly (PyNative); they differ in what
    runs fast, right and exportable:

    * training concatenates the zeros. Compiled on MindSpore 2.7.2's CPU backend, ``ZeroPad2d``'s
      gradient (PadV3's) is wrong from a graph's second call on, and its forward and backward take
      2-4x the pool's own time; concatenation and its gradient (a slice) are exact and fast
      (``benchmarks/stem_pool.py``);
    * inference pads with ``ops.Pad``, which both exporters keep batch-agnostic (ONNX has no PadV3,
      and would fold concatenated zeros into batch-sized constants).

    ``MaxPool2d``'s own padding is fast too, but sums overlapping windows' gradients in another order
    (last-bit differences), and its dynamic-batch MINDIR does not load.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pad = ops.Pad(((0, 0), (0, 0), (1, 1), (1, 1)))
        self.pool = nn.MaxPool2d(3, 2)

    def construct(self, x):
        return self.pool(self.concat_zeros(x) if self.training else self.pad(x))

    @staticmethod
    def concat_zeros(x):
        """``x`` with one row and one column of zeros on each side (constants: no gradient path)."""
        n, c, h, w = x.shape
        rows = ops.zeros((n, c, 1, w), x.dtype)
        x = ops.concat((rows, x, rows), 2)
        columns = ops.zeros((n, c, h + 2, 1), x.dtype)
        return ops.concat((columns, x, columns), 3)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """Bias-free conv with torch-style symmetric padding and kaiming-normal (fan_out) init."""
    return nn.Conv2d(cin, cout, kernel, stride, pad_mode="pad", padding=kernel // 2, has_bias=False,
                     weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))


def _bn(channels: int, zero_gamma: bool = False) -> nn.BatchNorm2d:
    """BatchNorm with torch defaults (eps 1e-5, torch momentum 0.1 == MindSpore 0.9)."""
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9, gamma_init="zeros" if zero_gamma else "ones")


class BasicBlock(nn.Cell):
    """Two 3x3 convs plus identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Cell] = None, zero_init_residual: bool = False) -> None:
        super().__init__()
        self.conv1 = _conv(cin, planes, 3, stride)
        self.bn1 = _bn(planes)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = _bn(planes, zero_init_residual)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def construct(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Cell):
    """1x1 reduce, 3x3 (carrying the stride: v1.5), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Cell] = None, zero_init_residual: bool = False) -> None:
        super().__init__()
        self.conv1 = _conv(cin, planes, 1)
        self.bn1 = _bn(planes)
        self.conv2 = _conv(planes, planes, 3, stride)
        self.bn2 = _bn(planes)
        self.conv3 = _conv(planes, planes * 4, 1)
        self.bn3 = _bn(planes * 4, zero_init_residual)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def construct(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = Type[Union[BasicBlock, Bottleneck]]


def _make_layer(block: Block, cin: int, planes: int, blocks: int, stride: int,
                zero_init_residual: bool) -> nn.SequentialCell:
    """One stage; the first block projects the shortcut when shape changes."""
    cout = planes * block.expansion
    downsample = None
    if stride != 1 or cin != cout:
        downsample = nn.SequentialCell(_conv(cin, cout, 1, stride), _bn(cout))
    layers = [block(cin, planes, stride, downsample, zero_init_residual)]
    layers += [block(cout, planes, 1, None, zero_init_residual) for _ in range(blocks - 1)]
    return nn.SequentialCell(layers)


class ResNet(nn.Cell):
    """ResNet with an ``imagenet`` (7x7/2 conv + 3x3/2 max pool) or ``cifar`` (3x3/1 conv) stem."""

    classifier_name = "fc"

    def __init__(self, block: Block, layers: Sequence[int], stem: str = "imagenet",
                 num_classes: int = 1000, in_chans: int = 3, zero_init_residual: bool = False,
                 base_width: int = 64) -> None:
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"unknown ResNet stem {stem!r}")
        imagenet = stem == "imagenet"
        self.conv1 = _conv(in_chans, base_width, 7 if imagenet else 3, 2 if imagenet else 1)
        self.bn1 = _bn(base_width)
        self.relu = nn.ReLU()
        self.maxpool = ZeroPaddedMaxPool() if imagenet else nn.Identity()
        cin = base_width
        for i, blocks in enumerate(layers):
            planes = base_width * 2 ** i
            layer = _make_layer(block, cin, planes, blocks, 1 if i == 0 else 2, zero_init_residual)
            setattr(self, f"layer{i + 1}", layer)
            cin = planes * block.expansion
        self.fc = nn.Dense(cin, num_classes, weight_init=HeUniform(math.sqrt(5)),
                           bias_init=Uniform(1 / math.sqrt(cin)))

    def construct(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(axis=(2, 3)))


@register_model("resnet", **_IMAGENET, reference="69.758" + _TORCHVISION,
                description="ResNet-18 v1.5, BasicBlock [2, 2, 2, 2]")
def resnet18(num_classes: int = 1000, in_chans: int = 3, zero_init_residual: bool = False,
             base_width: int = 64) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), "imagenet", num_classes, in_chans, zero_init_residual, base_width)


@register_model("resnet", **_IMAGENET, reference="73.314" + _TORCHVISION,
                description="ResNet-34 v1.5, BasicBlock [3, 4, 6, 3]")
def resnet34(num_classes: int = 1000, in_chans: int = 3, zero_init_residual: bool = False,
             base_width: int = 64) -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3), "imagenet", num_classes, in_chans, zero_init_residual, base_width)


@register_model("resnet", **_IMAGENET, reference="76.130" + _TORCHVISION,
                description="ResNet-50 v1.5, Bottleneck [3, 4, 6, 3]")
def resnet50(num_classes: int = 1000, in_chans: int = 3, zero_init_residual: bool = False,
             base_width: int = 64) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), "imagenet", num_classes, in_chans, zero_init_residual, base_width)


@register_model("resnet", **_IMAGENET, reference="77.374" + _TORCHVISION,
                description="ResNet-101 v1.5, Bottleneck [3, 4, 23, 3]")
def resnet101(num_classes: int = 1000, in_chans: int = 3, zero_init_residual: bool = False,
              base_width: int = 64) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 23, 3), "imagenet", num_classes, in_chans, zero_init_residual, base_width)


@register_model("resnet", **_IMAGENET, reference="78.312" + _TORCHVISION,
                description="ResNet-152 v1.5, Bottleneck [3, 8, 36, 3]")
def resnet152(num_classes: int = 1000, in_chans: int = 3, zero_init_residual: bool = False,
              base_width: int = 64) -> ResNet:
    return ResNet(Bottleneck, (3, 8, 36, 3), "imagenet", num_classes, in_chans, zero_init_residual, base_width)


@register_model("resnet", **_CIFAR, reference="93.02" + _KUANGLIU,
                description="ResNet-18, CIFAR stem (3x3/1 conv, no max pool)")
def resnet18_cifar(num_classes: int = 10, in_chans: int = 3, zero_init_residual: bool = False,
                   base_width: int = 64) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), "cifar", num_classes, in_chans, zero_init_residual, base_width)


@register_model("resnet", **_CIFAR, reference="",
                description="ResNet-34, CIFAR stem (3x3/1 conv, no max pool)")
def resnet34_cifar(num_classes: int = 10, in_chans: int = 3, zero_init_residual: bool = False,
                   base_width: int = 64) -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3), "cifar", num_classes, in_chans, zero_init_residual, base_width)


@register_model("resnet", **_CIFAR, reference="93.62" + _KUANGLIU,
                description="ResNet-50, CIFAR stem (3x3/1 conv, no max pool)")
def resnet50_cifar(num_classes: int = 10, in_chans: int = 3, zero_init_residual: bool = False,
                   base_width: int = 64) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), "cifar", num_classes, in_chans, zero_init_residual, base_width)


@register_model("resnet", **_CIFAR, reference="93.75" + _KUANGLIU,
                description="ResNet-101, CIFAR stem (3x3/1 conv, no max pool)")
def resnet101_cifar(num_classes: int = 10, in_chans: int = 3, zero_init_residual: bool = False,
                    base_width: int = 64) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 23, 3), "cifar", num_classes, in_chans, zero_init_residual, base_width)


@register_model("resnet", **_CIFAR, reference="",
                description="ResNet-152, CIFAR stem (3x3/1 conv, no max pool)")
def resnet152_cifar(num_classes: int = 10, in_chans: int = 3, zero_init_residual: bool = False,
                    base_width: int = 64) -> ResNet:
    return ResNet(Bottleneck, (3, 8, 36, 3), "cifar", num_classes, in_chans, zero_init_residual, base_width)


# --------------------------------------------------------------------------- conversion from torchvision

_BN_RENAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


@CONVERTERS.register("torchvision")
def convert_torchvision_resnet(src: str, dst: str, arch: Optional[str]) -> dict:
    """Convert a torchvision ResNet state dict (``.pth``/``.pt``/``.safetensors``) to a MindSpore ``.ckpt``.

    Every tensor is checked by name and shape against ``create_model(arch)`` before ``dst`` is
    written. Returns ``{"num_params", "num_classes", "arch"}`` (trainable parameter count).
    """
    if not arch:
        raise UserError("--from torchvision needs --arch, e.g. --arch resnet50")
    state = read_torch_state(src)
    if "fc.weight" not in state:
        raise UserError(f"{src} has no 'fc.weight'; expected a torchvision ResNet state dict")
    num_classes = int(state["fc.weight"].shape[0])
    net = create_model(arch, num_classes=num_classes)
    own = {name: tuple(p.shape) for name, p in net.parameters_dict().items()}
    hint = f"is {arch!r} the right architecture?"
    entries = []
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        name = _ms_name(key, own)
        if name not in own:
            raise UserError(f"{src}: tensor {key!r} has no counterpart in {arch}; {hint}")
        if tuple(value.shape) != own[name]:
            raise UserError(f"{src}: tensor {key!r} has shape {tuple(value.shape)} but {arch} expects "
                            f"{own[name]}; {hint}")
        entries.append({"name": name, "data": ms.Tensor(value.astype(np.float32))})
    missing = sorted(set(own) - {e["name"] for e in entries})
    if missing:
        raise UserError(f"{src} lacks {len(missing)} tensors {arch} needs, e.g. {missing[:SHOWN]}; {hint}")
    ms.save_checkpoint(entries, dst)
    num_params = sum(p.size for p in net.trainable_params())
    return {"num_params": int(num_params), "num_classes": num_classes, "arch": arch}


def _ms_name(key: str, own: Dict[str, tuple]) -> str:
    """torchvision name -> MindSpore name; BatchNorm tensors are renamed when the model says so."""
    prefix, _, leaf = key.rpartition(".")
    renamed = f"{prefix}.{_BN_RENAMES.get(leaf, leaf)}"
    return renamed if renamed in own else key

