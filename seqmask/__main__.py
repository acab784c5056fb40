"""``python -m seqmask`` runs the ``seqmask`` command line."""

import sys

from seqmask.cli import main

if __name__ == "__main__":
    sys.exit(main())
