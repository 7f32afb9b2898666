"""``python -m difflike``: the ``difflike`` command without its console script."""

import sys

from difflike.cli import main

sys.exit(main())
