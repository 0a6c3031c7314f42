"""`python -m fastcap ...`: the fastcap command line (see fastcap.cli)."""
import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
