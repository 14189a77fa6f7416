"""Checkpoint I/O: the training-checkpoint format, atomic (optionally asynchronous) saving with
keep-last-K and best, finding the newest valid checkpoint, and merging parallel slices."""
from ms_suite.checkpoint.format import META_KEY, model_weights, read_checkpoint, read_checkpoint_meta
from ms_suite.checkpoint.manager import (BEST_NAME, CheckpointManager, CheckpointWriteError, atomic_save,
                                         common_steps, latest_valid, merge_slices, own_slice, rank_dir, resume_point,
                                         step_checkpoints)

__all__ = ["BEST_NAME", "META_KEY", "CheckpointManager", "CheckpointWriteError", "atomic_save", "common_steps",
           "latest_valid", "merge_slices", "model_weights", "own_slice", "rank_dir", "read_checkpoint",
           "read_checkpoint_meta", "resume_point", "step_checkpoints"]
