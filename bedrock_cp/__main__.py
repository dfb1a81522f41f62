"""``python -m bedrock_cp``: the same as the ``bedrock-cp`` command."""

import sys

from .cli import main

sys.exit(main())
