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


def test_stem_max_pool_equals_zero_padding():
    """The stem's padded MaxPool2d gives what ZeroPad2d + a valid MaxPool2d gives on post-ReLU inputs:
    the same outputs, and input gradients equal up to float summation order at positive inputs (tied
    zeros get no gradient through the ReLU before the pool, whichever of them a pool picks)."""
    from mindspore import nn

    padded, zero_padded = nn.MaxPool2d(3, 2, pad_mode="pad", padding=1), nn.SequentialCell(nn.ZeroPad2d(1),
                                                                                         nn.MaxPool2d(3, 2))
    for size in (15, 16):
        x = np.maximum(np.random.default_rng(size).standard_normal((2, 3, size, size)), 0).astype(np.float32)
        results = [(pool(ms.Tensor(x)).asnumpy(),
                    ms.grad(lambda inp, p=pool: (p(inp) * p(inp)).sum())(ms.Tensor(x)).asnumpy()[x > 0])
                   for pool in (padded, zero_padded)]
        (out, grad), (ref_out, ref_grad) = results
        np.testing.assert_array_equal(out, ref_out)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=1e-6)
