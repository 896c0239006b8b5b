"""The command line that runs a pyraftkv module in a child process, with this very package.

``python -m pyraftkv...`` puts the working directory first on the module path, so started
from a pyraftkv source checkout after a plain ``pip install .`` the child would import the
checkout (which has no compiled engine) instead of the installed package. The command
here puts the directory this process imported pyraftkv from first instead.
"""

from __future__ import annotations

import os
import sys

import pyraftkv


def module_command(module: str, *args: str) -> list[str]:
    """argv running ``module`` as ``__main__`` (like ``python -m``) with ``args``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(pyraftkv.__file__)))
    code = (
        f"import runpy, sys; sys.path[0] = {root!r}; "
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-c", code, *args]
