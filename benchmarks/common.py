"""What the benchmark scripts share (they run as ``python benchmarks/NAME.py``, so this imports as ``common``)."""

import pathlib


def rss_mib() -> float:
    """Resident memory of this process in MiB (Linux ``/proc``)."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status: this benchmark needs Linux.")
