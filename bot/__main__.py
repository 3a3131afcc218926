"""Entry point: ``python -m bot run|generate|check-config``."""

import sys

from bot.cli import main

if __name__ == "__main__":
    sys.exit(main())
