import sys

from cfviewer.cli import main

sys.exit(main())
