"""`python -m connectors.cli`: the same as the `freshstream` console script."""

import sys

from connectors.cli.main import main

sys.exit(main())
