"""``python -m clipsearch.apps.cli``: the same as the ``clipsearch`` command."""

import sys

from clipsearch.apps.cli import main

sys.exit(main())
