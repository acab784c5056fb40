"""``python -m seqmask`` runs the ``seqmask`` command line."""

import sys

from seqmask.cli import main

sys.exit(main())
