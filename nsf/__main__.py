"""``python -m nsf`` is the ``nsf`` command."""

import sys

from nsf.cli import main

sys.exit(main())
