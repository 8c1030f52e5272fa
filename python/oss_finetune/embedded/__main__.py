"""``python -m oss_finetune.embedded build|where|measure``."""

import sys

from .base import main

if __name__ == "__main__":
    sys.exit(main())
