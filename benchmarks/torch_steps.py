"""Time a PyTorch ResNet training step on a fixed random batch, in this process (vs_pytorch.py's reference).

The network is torchvision's ResNet layout (tests/torch_reference.py; the CIFAR variant swaps in
the 3x3/1 stem without max pool, like ms-suite's ``resnet18_cifar``), trained with SGD and
cross-entropy set up like the ms-suite recipe it is compared with.

    .venv/bin/python benchmarks/torch_steps.py --arch resnet18 --cifar-stem --batch 32 --threads 2 \\
        [--channels-last] --momentum 0.9 --nesterov --weight-decay 5e-4

Prints one JSON line with per-step seconds and samples/s.
"""
from __future__ import annotations

import os
import sys
import time

from common import ROOT, median, parse_args, print_json, timed_calls


def add_arguments(parser) -> None:
    parser.add_argument("--arch", choices=("resnet18", "resnet50"), required=True)
    parser.add_argument("--cifar-stem", action="store_true", help="3x3 stride-1 stem, no max pool")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--nesterov", action="store_true")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.0)


def build_resnet(args):
    from torch import nn

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from torch_reference import ResNet, ARCHS

    block, layers = ARCHS[args.arch]
    net = ResNet(block, layers, args.num_classes)
    if args.cifar_stem:
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    return net


def main() -> None:
    args = parse_args(__doc__, add_arguments)
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = build_resnet(args).train()
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    images = torch.rand(args.batch, 3, args.image_size, args.image_size).contiguous(memory_format=memory_format)
    labels = torch.randint(0, args.num_classes, (args.batch,))
    decay, no_decay = [], []
    for name, param in net.named_parameters():  # ms-suite's no_decay_bn_bias: no decay on BN and biases
        (no_decay if param.ndim <= 1 else decay).append(param)
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=args.lr, momentum=args.momentum, nesterov=args.nesterov)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(net(images), labels)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    start = time.perf_counter()
    step()
    first_s = time.perf_counter() - start
    times = timed_calls(step, args.steps, args.warmup)
    step_s = median(times)
    print_json({"arch": args.arch, "channels_last": args.channels_last, "threads": torch.get_num_threads(),
                "batch": args.batch, "first_step_s": round(first_s, 3), "step_s": [round(t, 5) for t in times],
                "median_step_s": round(step_s, 5), "samples_per_s": round(args.batch / step_s, 3),
                "torch": torch.__version__})


if __name__ == "__main__":
    main()
