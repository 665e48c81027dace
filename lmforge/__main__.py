"""`python -m lmforge ...` is the same as the `lmforge` command."""
import sys

from .cli import entry

sys.exit(entry())
