"""``python -m adafuse`` (also what ``torchrun -m adafuse`` runs)."""

import sys

from adafuse.cli import main

sys.exit(main())
