import sys

from maxpoolbert.report.cli import main

sys.exit(main())
