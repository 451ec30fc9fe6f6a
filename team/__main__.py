import sys

from team.stack import main

sys.exit(main())
