import sys

from node.cli.entry import main

sys.exit(main())
