"""What the benchmark scripts share (they run as ``python benchmarks/NAME.py``, so this imports as ``common``)."""

import json
import pathlib
from typing import Any, Dict

from sb3_diffusion_il import files


def rss_mib() -> float:
    """Resident memory of this process in MiB (Linux ``/proc``)."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status: this benchmark needs Linux.")


def write_result(path: pathlib.Path, result: Dict[str, Any]) -> None:
    """Prints a benchmark's figures and writes them, atomically, to its committed file."""
    text = json.dumps(result, indent=1)
    print(text)
    files.atomic_write_bytes(path, text.encode())
