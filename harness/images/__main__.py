"""`python -m harness.images build|status`: the same as `celery-chaos images build|status`."""

import sys

from harness.images.cli import main

sys.exit(main())
