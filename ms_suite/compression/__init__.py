"""Model compression through Golden Stick (SimQAT, SLB, SCOP, UniPruner) and knowledge distillation.

``compress(cfg, output_dir)`` measures the trained float model, applies ``cfg.compression``,
fine-tunes with the suite's trainer, converts, exports a MINDIR and a verified ONNX file
(SimQAT: INT8) and writes a before/after report measured on the deployed files.
Each algorithm registers itself in :data:`ms_suite.registry.COMPRESSION` (``@register``); a new one
is a new module in this package.
"""
import warnings

# Golden Stick's @deprecated decorator turns every DeprecationWarning of the process on ("always") when
# its package is imported, and compression runs then printed MindSpore's own deprecation notices.
# Importing it here first, inside catch_warnings, restores the filters right after.
with warnings.catch_warnings():
    import mindspore_gs  # noqa: F401

from ms_suite.compression.base import Algorithm, build_algorithm  # noqa: E402
from ms_suite.compression.pipeline import REPORT_NAME, compress, use_pretrained  # noqa: E402

__all__ = ["Algorithm", "REPORT_NAME", "build_algorithm", "compress", "use_pretrained"]
