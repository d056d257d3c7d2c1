"""`python -m wdrank`: see `wdrank.cli`."""

import sys

from wdrank.cli import main

sys.exit(main())
