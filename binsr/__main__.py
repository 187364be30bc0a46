import sys

from binsr.cli import main

sys.exit(main())
