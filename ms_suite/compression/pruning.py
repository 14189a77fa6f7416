"""Channel pruning through Golden Stick: SCOP (knockoff scoring, then fine-tuning) and UniPruner.

Both end with a physically smaller network: pruned channels are removed from the weights,
BatchNorm statistics and the next layer's inputs, so the exported MINDIR has fewer parameters
and FLOPs, not masks.
"""
from __future__ import annotations

import copy
import logging
import os
from typing import Dict, List

import numpy as np
from mindspore import Tensor, nn
from mindspore_gs.pruner import PrunerFtCompressAlgo, PrunerKfCompressAlgo, UniPruner
from mindspore_gs.pruner.scop.scop_pruner import MaskedConv2dbn
from mindspore_gs.pruner.uni_pruning.utils import prune_net

from ms_suite.compression.base import Algorithm, GoldenStickCallbacks, TrainContext, register
from ms_suite.compression.compat import KnockoffBatch, refresh_pruned, unmask_parameter_names
from ms_suite.compression.report import channel_rows
from ms_suite.runtime import process_rank

log = logging.getLogger("ms_suite")

Keep = Dict[str, np.ndarray]  # "layer1.0.conv1" -> output channels to keep


def remove_block_channels(net: nn.Cell, keep: Keep) -> List[str]:
    """Remove output channels of residual blocks' inner convolutions, in place.

    For ``<block>.conv<i>`` in ``keep``, the kept output channels survive in ``conv<i>``, in
    ``bn<i>`` and in the input of ``conv<i+1>``. A block's last convolution feeds the residual
    sum, so its width stays (entries for it are ignored). Parameter names are unchanged.
    Returns the pruned convolutions.

    Golden Stick's own SCOP pruning step is private and written for Bottleneck blocks; on
    BasicBlock ResNets it fails ("'MaskedConv2dbn' object has no attribute 'in_index'").
    """
    cells = dict(net.cells_and_names())
    pruned = []
    for path, kept in sorted(keep.items()):
        block_path, _, conv_name = path.rpartition(".")
        block, index = cells[block_path], int(conv_name[len("conv"):])
        following = getattr(block, f"conv{index + 1}", None)
        if following is None:
            continue
        kept = np.sort(np.asarray(kept, dtype=np.int64))
        conv, bn = getattr(block, conv_name), getattr(block, f"bn{index}")
        _replace(block, block_path, conv_name, _conv_like(conv, conv.weight.asnumpy()[kept],
                                                          None if conv.bias is None else conv.bias.asnumpy()[kept]))
        _replace(block, block_path, f"bn{index}", _bn_like(bn, kept))
        _replace(block, block_path, f"conv{index + 1}",
                 _conv_like(following, following.weight.asnumpy()[:, kept],
                            None if following.bias is None else following.bias.asnumpy()))
        pruned.append(path)
    return pruned


def _replace(block: nn.Cell, block_path: str, name: str, cell: nn.Cell) -> None:
    setattr(block, name, cell)
    cell.update_parameters_name(f"{block_path}.{name}.")


def _conv_like(conv: nn.Conv2d, weight: np.ndarray, bias) -> nn.Conv2d:
    """``conv``'s hyper-parameters with new weights (and so new channel counts)."""
    return nn.Conv2d(weight.shape[1] * conv.group, weight.shape[0], conv.kernel_size, conv.stride, conv.pad_mode,
                     conv.padding, conv.dilation, conv.group, conv.has_bias, weight_init=Tensor(weight),
                     bias_init=None if bias is None else Tensor(bias))


def _bn_like(bn: nn.BatchNorm2d, kept: np.ndarray) -> nn.BatchNorm2d:
    values = {name: Tensor(getattr(bn, name).asnumpy()[kept]) for name in
              ("gamma", "beta", "moving_mean", "moving_variance")}
    return nn.BatchNorm2d(len(kept), eps=bn.eps, momentum=bn.momentum, gamma_init=values["gamma"],
                          beta_init=values["beta"], moving_mean_init=values["moving_mean"],
                          moving_var_init=values["moving_variance"])


class _Pruner(Algorithm):
    families = ("resnet",)

    def layers(self, before: nn.Cell, after: nn.Cell) -> List[Dict[str, object]]:
        return channel_rows(before, after)


@register
class Scop(_Pruner):
    """SCOP: learn each channel's importance against knockoff features, remove the least important
    ``prune_rate`` of every block's inner convolutions, then fine-tune the smaller network."""

    name = "scop"
    notes = ("block-output convolutions keep their width (they feed the residual sum); prune_rate applies to "
             "the inner convolutions of every residual block",)

    def train(self, ctx: TrainContext) -> nn.Cell:
        keep = self.score_channels(ctx)

        def prune(net: nn.Cell) -> nn.Cell:
            pruned = remove_block_channels(net, keep)
            log.info("SCOP: removed %.0f%% of the output channels of %d inner convolutions; fine-tuning",
                     100 * self.settings.prune_rate, len(pruned))
            return net

        return ctx.fit(model_hook=prune)

    def score_channels(self, ctx: TrainContext) -> Keep:
        """Knockoff stage (Golden Stick's ``PrunerKfCompressAlgo``, only the knockoff scales train),
        then ``PrunerFtCompressAlgo`` ranks the channels; returns the channels to keep."""
        cfg = copy.deepcopy(self.cfg)
        cfg.train.epochs = self.settings.knockoff_epochs
        knockoff = ctx.fit(cfg, os.path.join(ctx.output_dir, "knockoff"),
                           model_hook=PrunerKfCompressAlgo({}).apply,
                           loss_hook=lambda net_with_loss, net: KnockoffBatch(net_with_loss))
        ranked = PrunerFtCompressAlgo({"prune_rate": self.settings.prune_rate}).apply(knockoff)
        return {name: cell.out_index.asnumpy() for name, cell in ranked.cells_and_names()
                if isinstance(cell, MaskedConv2dbn)}


@register
class UniPrunerAlgorithm(_Pruner):
    """UniPruner: every ``frequency`` epochs (and after the last) zero the least important groups
    of equivalent channels, residual-connected ones together, until the target is met; then
    Golden Stick's ``prune_net`` removes them."""

    name = "unipruner"

    def train(self, ctx: TrainContext) -> nn.Cell:
        def apply(net: nn.Cell) -> nn.Cell:  # runs in the trainer's setup, after the collectives start
            self.algo = self.uni_pruner(ctx)
            return unmask_parameter_names(self.algo.apply(net))

        net = ctx.fit(model_hook=apply, callbacks=[GoldenStickCallbacks(lambda trainer: self.algo.callbacks())])
        prune_net(self.algo.graph_anaylzer.groups, self.algo.callbacks()[0].mask)
        return refresh_pruned(self.algo.convert(net))

    def uni_pruner(self, ctx: TrainContext) -> UniPruner:
        """Golden Stick's UniPruner for this process: its ``rank`` names the MINDIR and checkpoint it saves
        every ``frequency`` epochs on Ascend (only rank 0 saves the final one), so each rank passes its own."""
        s = self.settings
        return UniPruner({
            "exp_name": self.name, "output_path": ctx.output_dir, "input_size": (1, *ctx.data_info.input_shape),
            "frequency": s.frequency, "target_sparsity": s.target_sparsity, "pruning_step": s.pruning_step,
            "filter_lower_threshold": s.filter_lower_threshold, "prune_flag": 1, "rank": process_rank(),
            "device_target": ctx.device})
