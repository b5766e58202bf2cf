import sys

from toolkit.edge.cli import main

sys.exit(main())
