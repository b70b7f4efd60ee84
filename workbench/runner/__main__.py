"""``python -m workbench.runner --db PATH --run ID``: the detached coordinator's entry point.

A separate ``__main__`` (rather than ``-m workbench.runner.coordinator``) so that ``spawn``
workers, which re-import the parent's main module, import nothing twice.
"""

import sys

from workbench.runner.coordinator import main

if __name__ == "__main__":
    sys.exit(main())
