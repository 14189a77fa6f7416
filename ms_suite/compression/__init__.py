"""Model compression through Golden Stick (SimQAT, SLB, SCOP, UniPruner) and knowledge distillation.

``compress(cfg, output_dir)`` measures the trained float model, applies ``cfg.compression``,
fine-tunes with the suite's trainer, converts, exports a MINDIR and a verified ONNX file
(SimQAT: INT8) and writes a before/after report measured on the deployed files.
Each algorithm registers itself in :data:`ms_suite.registry.COMPRESSION` (``@register``); a new one
is a new module in this package.
"""
from ms_suite.compression.base import Algorithm, build_algorithm
from ms_suite.compression.pipeline import REPORT_NAME, compress, use_pretrained

__all__ = ["Algorithm", "REPORT_NAME", "build_algorithm", "compress", "use_pretrained"]
