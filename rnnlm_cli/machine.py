"""What machine a measurement ran on: CPU model, core count, Python and numpy versions.

Result records (`rnnlm train --record`) and scripts/bench.py both describe the machine with this.
"""

from __future__ import annotations

import os
import platform

import numpy as np


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict:
    """{"cpu", "cores", "python", "numpy"} of this machine."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__}
