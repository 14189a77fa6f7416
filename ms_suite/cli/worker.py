"""The entry point of every rank: ``python -m ms_suite.cli.worker train ...`` runs the ``ms-suite`` command
line framed by the launcher's marker lines (:func:`ms_suite.launch.worker.run_framed`)."""
import sys

from ms_suite.cli.main import main
from ms_suite.launch.worker import run_framed

if __name__ == "__main__":
    sys.exit(run_framed(main, sys.argv[1:]))
