"""`python -m plasma.cli`: the same as the `plasma` command."""

import sys

from plasma.cli import main

sys.exit(main())
