"""What a benchmark measured: which dshift engine (git commit plus a hash of the dshift
sources), and how loaded the machine was.

The engine is being tuned while benchmarks run (editable install), so every result
records the exact source it imported; a load on the machine distorts ratios, so the
figures print it next to them.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path


def engine_fingerprint() -> str:
    import dshift

    root = Path(dshift.__file__).resolve().parent
    h = hashlib.sha1()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    try:
        head = subprocess.run(["git", "-C", str(root.parent), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip() or "?"
        dirty = subprocess.run(["git", "-C", str(root.parent), "status", "--porcelain", "--", "dshift"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = "?", ""
    return f"git {head}{' (dshift/ modified)' if dirty else ''}, sources sha1 {h.hexdigest()[:10]}"


def load() -> str:
    """The load averages over 1, 5 and 15 minutes, for printing beside a figure."""
    return "load avg " + ", ".join(f"{x:.1f}" for x in os.getloadavg())
