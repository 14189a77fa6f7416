"""BERT's layout for model parallelism: Megatron-style tensor-parallel strategies and the cells of each
pipeline stage (read in semi-auto/auto parallel runs, Ascend/GPU)."""
from __future__ import annotations

from typing import List, Tuple

from mindspore import nn

from model_zoo.bert.modeling import BertModel
from ms_suite.runtime.auto_parallel import ModelShape, ParallelLayout


def shard_bert(model: BertModel, dp: int, mp: int) -> None:
    """Megatron-style strategies: column-parallel Q/K/V and FFN-up, row-parallel output projections,
    attention split by heads; everything else data parallel. Only read in semi-auto parallel mode."""
    for layer in model.encoder.layer:
        attention = layer.attention.self
        for column in (attention.query, attention.key, attention.value, layer.intermediate.dense):
            column.matmul.shard(((dp, 1), (mp, 1)))
            column.bias_add.shard(((dp, mp), (mp,)))
        for row in (layer.attention.output.dense, layer.output.dense):
            row.matmul.shard(((dp, mp), (1, mp)))
            row.bias_add.shard(((dp, 1), (1,)))
        attention.scores_matmul.shard(((dp, mp, 1, 1), (dp, mp, 1, 1)))
        attention.softmax.shard(((dp, mp, 1, 1),))
        attention.context_matmul.shard(((dp, mp, 1, 1), (dp, mp, 1, 1)))
    embeddings = model.embeddings  # nn.Embedding gathers with flattened ids; positions are one row
    for table in (embeddings.word_embeddings, embeddings.token_type_embeddings):
        table.gather.shard(((1, 1), (dp,)))
    embeddings.position_embeddings.gather.shard(((1, 1), (1,)))


def backbone(net: nn.Cell) -> BertModel:
    """The BertModel inside ``net`` (or ``net`` itself)."""
    return net if isinstance(net, BertModel) else net.bert


def pipeline_parts(net: nn.Cell) -> Tuple[List[nn.Cell], List[nn.Cell], List[nn.Cell]]:
    """(cells before the encoder layers, the layers, cells after them) for pipeline stages."""
    model = backbone(net)
    heads = [cell for name, cell in net.name_cells().items() if name != "bert"] if net is not model else []
    return [model.embeddings], list(model.encoder.layer), [model.pooler, *heads]


def parallel_layout(net: nn.Cell) -> ParallelLayout:
    """What :func:`ms_suite.runtime.auto_parallel.apply_layout` needs to lay ``net`` out."""
    model = backbone(net)
    config = model.config
    first, layers, last = pipeline_parts(net)
    shape = ModelShape(config.num_hidden_layers, config.num_attention_heads, config.hidden_size,
                       config.intermediate_size)
    return ParallelLayout(first, layers, last, shape, shard=lambda dp, mp: shard_bert(model, dp, mp))
