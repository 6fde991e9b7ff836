"""`python -m bot` is `tutor run`."""

import sys

from bot.cli import main

main(["run", *sys.argv[1:]])
