"""``python -m node`` is the ``fora`` command."""

import sys

from .cli import run

sys.exit(run())
