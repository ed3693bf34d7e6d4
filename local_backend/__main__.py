import sys

from local_backend.cli import main

sys.exit(main())
