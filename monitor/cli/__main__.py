"""``python -m monitor.cli``: the same as the ``nlpmon`` console script."""

import sys

from monitor.cli.main import main

sys.exit(main())
