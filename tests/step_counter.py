"""Run ``python -m ms_suite ARGS`` counting the compiled train step's calls (one per micro-batch).

At exit it prints ``train step calls: N`` on stdout. With ``STEP_KILL_AT=K`` the process SIGKILLs
itself as call K starts, so a test can kill a run at an exact micro-batch (e.g. inside an
accumulation window) instead of racing a timer.
"""
import atexit
import os
import signal
import sys

from ms_suite.engine import train_step

calls = 0
kill_at = int(os.environ.get("STEP_KILL_AT", "0"))
step_call = train_step.TrainStep.__call__


def counted_call(self, *args, **kwargs):
    global calls
    calls += 1
    if calls == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return step_call(self, *args, **kwargs)


train_step.TrainStep.__call__ = counted_call
atexit.register(lambda: print(f"train step calls: {calls}", flush=True))

if __name__ == "__main__":
    from ms_suite.cli.main import main

    sys.exit(main(sys.argv[1:]))
