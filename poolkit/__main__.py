"""``python -m poolkit info``: see :mod:`poolkit.info`."""
import sys

from .info import main

sys.exit(main())
