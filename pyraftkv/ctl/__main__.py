"""``python -m pyraftkv.ctl``: the same as the ``pyraftkvctl`` command."""

import sys

from .main import main

sys.exit(main())
