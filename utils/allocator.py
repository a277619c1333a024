"""glibc malloc settings that keep freed memory for the next step instead of handing it back to the kernel.

A training or inference step allocates and frees tensors of the same sizes every time. By default glibc
serves large blocks with fresh memory mappings and trims the top of its heap when they are freed, so each
step's activations land on new pages that the kernel zero-fills on first touch: on CPU those page faults
cost more than the elementwise work itself. With these settings the process keeps up to its peak, as a
GPU caching allocator does. `BIKE_MALLOC=0` keeps glibc's defaults.
"""
import ctypes
import logging
import os
import sys

from utils.errors import UsageError

logger = logging.getLogger(__name__)

SWITCH = "BIKE_MALLOC"
# mallopt parameter number -> (value, the environment variable through which a new process's glibc reads it).
SETTINGS = {
    -3: (32 << 20, "MALLOC_MMAP_THRESHOLD_"),  # M_MMAP_THRESHOLD, glibc's largest: smaller blocks come from the heap
    -1: (1 << 30, "MALLOC_TRIM_THRESHOLD_"),  # M_TRIM_THRESHOLD: up to 1 GiB of free heap top is kept
    -2: (64 << 20, "MALLOC_TOP_PAD_"),  # M_TOP_PAD: the heap grows 64 MiB at a time
}


def enabled() -> bool:
    value = os.environ.get(SWITCH, "1")
    if value not in ("0", "1"):
        raise UsageError(f"environment variable {SWITCH} must be 1 (keep freed memory, the default) or 0 "
                         f"(glibc's defaults), got {value!r}")
    return value == "1"


def glibc():
    """The C library when it is glibc (it alone has these settings), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Applies SETTINGS to this process and exports them to the processes it starts (DataLoader workers,
    whatever the start method). A setting the user gave in the environment is left as it is. Returns
    whether the settings are in effect."""
    libc = glibc() if enabled() else None
    if libc is None:
        logger.debug("malloc: the C library's defaults")
        return False
    for parameter, (value, variable) in SETTINGS.items():
        if variable not in os.environ:
            if libc.mallopt(parameter, value) != 1:
                logger.warning("malloc: glibc refused %s=%d; keeping its default", variable, value)
                return False
            os.environ[variable] = str(value)
    logger.debug("malloc: freed memory kept (%s)", ", ".join(f"{v}={os.environ[v]}" for _, v in SETTINGS.values()))
    return True
