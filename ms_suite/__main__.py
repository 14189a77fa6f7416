import sys

from ms_suite.cli.main import main

sys.exit(main())
