"""``python -m node`` is the ``fora`` command."""

import sys

from .cli import main

sys.exit(main())
