"""``python -m cage_adapters``: the ``cage`` command (same as the console script)."""

import sys

from cage_adapters.cli import main

if __name__ == "__main__":
    sys.exit(main())
