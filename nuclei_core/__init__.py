"""nuclei_core: models, whole-slide engine, outputs and metrics for nucleus analysis."""

import sys

__version__ = "0.1.0"

if sys.argv[:1] == ["-m"]:  # being run as ``python -m nuclei_core.<script>``: Ctrl-C is one line from now on
    from .interrupts import leave_at_once_on_ctrl_c

    leave_at_once_on_ctrl_c()
