import sys

from cellbench.cli.main import main

sys.exit(main())
