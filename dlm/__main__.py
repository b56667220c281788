"""`python -m dlm ...`: see dlm.cli."""

import sys

from dlm.cli import main

sys.exit(main())
