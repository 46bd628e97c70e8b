"""``python -m bidsqc`` runs the command line."""

import sys

from bidsqc.cli.run import main

sys.exit(main())
