"""ResNet family: every registered variant builds, runs forward and backward; sizes match torchvision."""
import mindspore as ms
import numpy as np
import pytest

from ms_suite.models.flops import count_flops, count_params
from ms_suite.models.registry import create_model, list_models, model_info

RESNETS = [name for name in list_models() if model_info(name).family == "resnet"]


def test_all_variants_registered():
    stems = ["", "_cifar"]
    assert sorted(RESNETS) == sorted(f"resnet{d}{s}" for d in (18, 34, 50, 101, 152) for s in stems)


@pytest.mark.parametrize("name", RESNETS)
def test_forward_backward_tiny(name):
    ms.set_seed(0)
    net = create_model(name, num_classes=5, base_width=8)
    net.set_train(True)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)), ms.float32)
    params = net.trainable_params()
    loss, grads = ms.value_and_grad(lambda inp: net(inp).mean(), None, params)(x)
    assert net(x).shape == (2, 5)
    assert np.isfinite(loss.asnumpy())
    assert len(grads) == len(params)
    for param, grad in zip(params, grads):
        assert np.isfinite(grad.asnumpy()).all(), param.name


@pytest.mark.parametrize("name, params, gflops", [("resnet18", 11_689_512, 3.63), ("resnet50", 25_557_032, 8.18)])
def test_size_matches_torchvision(name, params, gflops):
    net = create_model(name)
    assert count_params(net) == params
    assert count_flops(net, model_info(name).input_size) / 1e9 == pytest.approx(gflops, abs=0.01)


def test_zero_init_residual():
    net = create_model("resnet18", base_width=8, zero_init_residual=True)
    gammas = {n: p.asnumpy() for n, p in net.parameters_dict().items() if n.endswith("gamma")}
    assert not gammas["layer1.0.bn2.gamma"].any() and not gammas["layer4.1.bn2.gamma"].any()
    assert gammas["layer1.0.bn1.gamma"].all() and gammas["layer2.0.downsample.1.gamma"].all()


def _trained_stem(mode: int, zero_pad2d: bool, size: int) -> dict:
    """An ImageNet-stem ResNet-18 (width 8) after three SGD + momentum steps, in ``mode``."""
    from mindspore import nn

    ms.set_context(mode=mode)
    ms.set_seed(0)
    net = create_model("resnet18", num_classes=5, base_width=8).set_train(True)
    if zero_pad2d:
        net.maxpool = nn.SequentialCell(nn.ZeroPad2d(1), nn.MaxPool2d(3, 2))
    step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True)),
                               nn.Momentum(net.trainable_params(), 0.1, 0.9))
    rng = np.random.default_rng(size)
    for _ in range(3):
        step(ms.Tensor(rng.standard_normal((4, 3, size, size)), ms.float32),
             ms.Tensor(rng.integers(0, 5, 4), ms.int32))
    return {name: p.asnumpy() for name, p in net.parameters_and_names()}


@pytest.mark.parametrize("size", [30, 32])
def test_stem_max_pool_trains_bit_for_bit_like_zero_pad2d(size):
    """The ImageNet stem's pool trains, compiled or not, exactly as ``ZeroPad2d(1)`` + a valid
    ``MaxPool2d(3, 2)`` in PyNative mode: after three steps every weight is equal bit for bit.
    (Compiled, ``ZeroPad2d``'s own gradient is stale from its second call on MindSpore 2.7.2's CPU
    backend, so PyNative is the reference.)"""
    reference = _trained_stem(ms.PYNATIVE_MODE, True, size)
    for mode in (ms.PYNATIVE_MODE, ms.GRAPH_MODE):
        ours = _trained_stem(mode, False, size)
        assert ours.keys() == reference.keys()
        for name in ours:
            np.testing.assert_array_equal(ours[name], reference[name], err_msg=f"mode {mode}: {name}")
