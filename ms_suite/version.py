"""This process's ms-suite: its version, and when the suite was first imported (the start of
time-to-first-step; ``ms_suite/__init__`` imports this module first)."""
import time

__version__ = "0.1.0"
IMPORT_TIME = time.time()
