"""`python -m tinytorch.student export|status|reset ...` (see the package docstring)."""

import sys

from tinytorch.student import main

sys.exit(main())
