"""``python -m mimamori.cli``: the same as the ``mimamori`` command."""

import sys

from mimamori.cli.main import main

sys.exit(main())
