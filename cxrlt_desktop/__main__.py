import sys

from cxrlt_desktop.cli import main

sys.exit(main())
