"""``python -m pyraftkv``: the same as the ``pyraftkv`` command."""

import sys

from .node.server import main

sys.exit(main())
