"""`python -m unetflow.cli`: the `unetflow` command."""

import sys

from unetflow.cli.main import main

sys.exit(main())
