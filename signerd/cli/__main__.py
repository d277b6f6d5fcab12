"""``python -m signerd.cli``: signerctl."""
import sys

from signerd.cli import main

sys.exit(main())
