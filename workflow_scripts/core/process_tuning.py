"""Process-wide settings for the numpy-heavy steps, applied by `python -m workflow_scripts` (every rule)
and benchmarks/speed.py before numpy is imported. Each job tunes its own process, so a SLURM node
with another CPU than the submitting host is tuned for its own CPU.

- AMD Zen 4 (family 19h with AVX-512) runs the memory-destination compress store, which numpy's
  AVX-512 sort partitions with, in microcode: np.sort of 64-bit keys, the tokenizer's main cost, runs
  several times slower there than numpy's AVX2 sort (benchmarks/README.md). numpy picks its
  kernels when imported, so on Zen 4 its AVX-512 kernels are switched off with
  NPY_DISABLE_CPU_FEATURES; Zen 4 executes 512-bit vectors as two 256-bit halves, so the AVX2 kernels
  lose little elsewhere. Zen 5 and Intel CPUs keep them.
- glibc returns freed blocks of a few MB to the OS and maps them again for the next chunk, so each
  chunk's arrays are page-faulted afresh (benchmarks/README.md counts the faults). Fixed
  mmap and trim thresholds keep freed memory in the heap for the next chunk; peak memory is unchanged.
Settings a user already made (NPY_DISABLE_CPU_FEATURES, MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_)
are left as they are; WORKFLOW_PROCESS_TUNING=off skips both (e.g. to measure what they bring).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys
from pathlib import Path

NUMPY_AVX512_FEATURES = "X86_V4 AVX512_ICL AVX512_SPR"  # numpy >= 2.4's names for its AVX-512 kernel groups
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 32 * 2**20  # the largest glibc accepts on 64-bit; larger blocks are still mapped
TRIM_THRESHOLD_BYTES = 128 * 2**20  # free memory kept at the heap's top before it is given back


def is_zen4(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo's text describes an AMD family 19h CPU with AVX-512, i.e. Zen 4."""
    fields = {}
    for line in cpuinfo.split("\n\n")[0].splitlines():  # the first processor's block
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return (
        fields.get("vendor_id") == "AuthenticAMD"
        and fields.get("cpu family") == "25"
        and "avx512f" in fields.get("flags", "").split()
    )


def tune_process(cpuinfo_path: Path = Path("/proc/cpuinfo")) -> list[str]:
    """Apply the settings above that fit this machine; return what was applied (for logs and benchmarks)."""
    if "numpy" in sys.modules:
        raise RuntimeError("tune_process() must run before numpy is imported")
    applied: list[str] = []
    if os.environ.get("WORKFLOW_PROCESS_TUNING", "on") == "off":
        return applied
    if "NPY_DISABLE_CPU_FEATURES" not in os.environ and cpuinfo_path.is_file() and is_zen4(cpuinfo_path.read_text()):
        os.environ["NPY_DISABLE_CPU_FEATURES"] = NUMPY_AVX512_FEATURES
        applied.append(f"NPY_DISABLE_CPU_FEATURES={NUMPY_AVX512_FEATURES} (AMD Zen 4: numpy's AVX2 sort)")
    user_set = {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & os.environ.keys()
    if platform.libc_ver()[0] == "glibc" and not user_set:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
        if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES):
            applied.append(f"glibc mmap threshold {MMAP_THRESHOLD_BYTES >> 20} MiB, trim threshold "
                           f"{TRIM_THRESHOLD_BYTES >> 20} MiB")
    return applied
