"""``python -m ensemble`` runs the ``ensemble`` command."""

import sys

from .cli import main

sys.exit(main())
