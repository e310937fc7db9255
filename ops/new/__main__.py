"""`python -m ops.new NS::NAME ...`: scaffold a new op (see ops.new and `python -m ops.new --help`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
