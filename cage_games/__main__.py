"""``python -m cage_games``: the ``cage`` command (solve, check, learn, align).

The command line lives in the ``cage_adapters`` package, installed with ``cage_games`` from the
same distribution; the core never imports it at module level (it stays free of the LLM layer),
so it is looked up here by name.
"""

import importlib
import sys


def main() -> int:
    """Run the ``cage`` command; a clear message if the command-line package is missing."""
    try:
        cli = importlib.import_module("cage_adapters.cli")
    except ImportError:
        print(
            "cage_games: the command line (package cage_adapters) is not installed; "
            "reinstall with `pip install -e .` from the repository",
            file=sys.stderr,
        )
        return 1
    return int(cli.main())


if __name__ == "__main__":
    sys.exit(main())
