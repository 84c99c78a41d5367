"""`python -m trm.cli ...` (as torchrun launches it): the `trm` command."""

import sys

from . import main

sys.exit(main())
