"""``python -m bldm_fast ...``: the same command line as the ``bldm-fast`` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
