"""Peak memory of a child Python, measured in the child itself.

`ru_maxrss` from wait4 is no use here: Linux carries the parent's high-water
mark into a forked child, so a child of a large pytest process reports at
least the parent's size. `VmHWM` belongs to the address space that exec made,
so the child reads its own when it is done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")

_REPORT = """
for _line in open("/proc/self/status"):
    if _line.startswith("VmHWM:"):
        print(json.dumps({"vmhwm_kib": int(_line.split()[1])}))
"""


def run_measured(code: str, *args) -> tuple[dict, int]:
    """Run `code` (which prints one JSON line and imports json) in a child
    Python; return that JSON answer and the child's peak RSS in bytes."""
    with tempfile.TemporaryFile() as err:
        done = subprocess.run([sys.executable, "-c", code + _REPORT, json.dumps(args)], stdout=subprocess.PIPE,
                              stderr=err, env={"PYTHONPATH": SRC, **os.environ})
        err.seek(0)
        assert done.returncode == 0, err.read().decode()
    lines = [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]
    return lines[0], lines[-1]["vmhwm_kib"] * 1024
