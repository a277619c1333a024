"""What this machine's CPU offers the programs' defaults: native bf16 matrix instructions."""
import functools
import sys
from pathlib import Path

# x86 flags (as Linux names them in /proc/cpuinfo) of instructions that multiply bf16 matrices natively:
# AMX tiles (Sapphire Rapids and later) and AVX512-BF16 dot products (Cooper Lake, Zen 4 and later).
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str) -> set:
    """The flags of the first processor in the text of /proc/cpuinfo (x86: a 'flags' line)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


@functools.lru_cache(maxsize=None)
def native_bf16_flags(cpuinfo_path: str = "/proc/cpuinfo") -> tuple:
    """The native-bf16 flags this CPU has, empty where it has none or the system does not say (not Linux)."""
    if not sys.platform.startswith("linux"):
        return ()
    try:
        flags = cpu_flags(Path(cpuinfo_path).read_text(errors="replace"))
    except OSError:
        return ()
    return tuple(flag for flag in NATIVE_BF16_FLAGS if flag in flags)
