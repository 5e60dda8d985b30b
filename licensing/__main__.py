"""`python -m licensing` runs the console script (useful where it is not installed)."""

import sys

from licensing.cli import main

sys.exit(main())
