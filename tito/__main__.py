"""``python -m tito`` = the ``tito`` console script."""

import sys

from .cli import main

sys.exit(main())
