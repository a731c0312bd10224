"""``python -m smemet.gateway run --config gateway.toml``."""

import sys

from .cli import main

sys.exit(main())
