"""``python -m rnnkit``: the same command line as the ``rnnkit`` console script."""

import sys

from .cli import main

sys.exit(main())
