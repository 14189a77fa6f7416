"""Launching on clusters: msrun and Ascend rank-table commands, rank tables, rank supervision.

``scripts/run_distribute_train.sh`` -> :mod:`ms_suite.cli.launch` -> :mod:`ms_suite.launch.commands`
(what to run on this node) -> :mod:`ms_suite.launch.supervisor` (run it, stop every rank when one
fails) -> each rank runs :mod:`ms_suite.cli.worker` (``ms-suite train`` framed by the marker lines of
:mod:`ms_suite.launch.worker`).
"""
