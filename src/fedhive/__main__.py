"""``python -m fedhive`` is the ``fedhive`` command."""

import sys

from fedhive.cli.main import main

sys.exit(main())
