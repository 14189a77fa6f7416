"""Deployable files: export a network (MINDIR, ONNX, AIR), run the written file in its own runtime,
compare it with the network (parity, latency) and describe it in a ``<file>.json`` manifest.

Layer: above the engine, below compression (which exports through it), ``ms_suite.api`` and the CLI.
"""
from ms_suite.deploy.deploy import (Deployed, eval_samples, evaluate_file, export_verified, train_batches,
                                    verify_file)
from ms_suite.deploy.export import FORMATS, check_device, export_model, output_path, resolve_format, signature
from ms_suite.deploy.runtime import load_runtime, onnx_session
from ms_suite.deploy.verify import Parity, Verification, verify_export

__all__ = ["Deployed", "FORMATS", "Parity", "Verification", "check_device", "eval_samples", "evaluate_file",
           "export_model", "export_verified", "load_runtime", "onnx_session", "output_path", "resolve_format",
           "signature", "train_batches", "verify_export", "verify_file"]
