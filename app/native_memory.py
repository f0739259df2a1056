"""Keep a web worker's address space close to the memory it really uses.

A cap on the address space (RLIMIT_AS: `ulimit -v`, systemd's LimitAS=) counts what a
process reserves, not what it uses. By default glibc reserves a 64 MB heap arena per
thread and OpenBLAS (loaded by scipy for the photo hash) a buffer per core: an idle
worker with 4 threads reserved 690 MB to use 130 MB, and under a 600 MB cap it could
not start its threads and died (tests/system/test_memory_cap.py). Two arenas and one
BLAS thread cost nothing here: decoding, the real work, is bounded by the decode slots.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc <malloc.h>


def limit_native_reservations(arenas: int = 2) -> None:
    """Use few malloc arenas and one BLAS thread; effective before numpy loads and threads start."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "MALLOC_ARENA_MAX" in os.environ:
        return  # the operator chose; glibc read it at start-up
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return
    mallopt(M_ARENA_MAX, arenas)
