"""Process-wide tuning for a service whose event loop shares the process with busy helper threads.

Applied once by the CLI at start-up, before any thread starts.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from typing import Any

# How long a thread may hold the GIL while another waits for it (shorter than CPython's default). Helper
# threads (aiosqlite's, the worker pool's result reader) hold it in stretches during a sync; with a short
# interval the event loop gets it back sooner, so status polls wait less during a sync.
SWITCH_INTERVAL_S = 0.001

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
ARENAS = 2
# The most memory a mapping worker keeps for reuse after freeing it (glibc's upper limit for the mmap
# threshold on 64-bit systems).
WORKER_KEPT_BYTES = 32 * 1024 * 1024


def _glibc_function(name: str, argtypes: list[Any]) -> Any | None:
    """A glibc malloc function returning int, or None where the C library has none (musl)."""
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas, unless MALLOC_ARENA_MAX already does; True when a cap is in place.

    Chunk-sized buffers are allocated in helper threads (aiosqlite's, the worker pool's result reader)
    and freed on the event loop's thread. glibc gives each thread its own arena, and each arena keeps
    its high-water mark, so memory crept up over a long sync; with two arenas it stays flat. Call it
    before any thread starts. Elsewhere than glibc (musl), a no-op.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return True  # the operator's choice, already applied by glibc at start-up
    mallopt = _glibc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    return mallopt is not None and bool(mallopt(_M_ARENA_MAX, arenas))


def keep_freed_memory(kept_bytes: int = WORKER_KEPT_BYTES) -> bool:
    """Make glibc keep up to ``kept_bytes`` of freed memory for reuse rather than hand it back to the OS
    at once; True when both settings took. Elsewhere than glibc (musl), a no-op returning False.

    For the mapping workers: each chunk allocates and frees buffers of a megabyte or more (the chunk's
    lines, its serialised rows), which glibc gave back to the OS after every chunk, so the next chunk
    faulted the same pages in again, about one page fault per product and most of the workers' system
    time. A worker then stays at the memory of its largest chunk, which is bounded by the batch size.
    """
    mallopt = _glibc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    # Both: blocks above the mmap threshold are unmapped when freed, and the heap's top is trimmed past
    # the trim threshold.
    return bool(mallopt(_M_MMAP_THRESHOLD, kept_bytes)) and bool(mallopt(_M_TRIM_THRESHOLD, kept_bytes))


def release_free_memory() -> bool:
    """Give back to the OS the heap pages that freed memory left behind (glibc's ``malloc_trim``).

    A sync allocates and frees rows chunk after chunk, in several threads. glibc keeps a free page
    resident while live blocks sit around it in the heap, so the service's memory crept up with the
    feed's length (not Python objects: tracemalloc stayed flat); trimming every few batches keeps it
    flat. It takes milliseconds: call it off the event loop. Elsewhere than glibc (musl), a no-op
    returning False.
    """
    malloc_trim = _glibc_function("malloc_trim", [ctypes.c_size_t])
    return malloc_trim is not None and bool(malloc_trim(0))


def freeze_start_up_objects() -> None:
    """Take every object alive now (modules, classes, the app and its resources) out of the cyclic GC.

    A full collection walks every tracked object: with start-up's objects among them it took tens of
    milliseconds during a large sync, and status polls arriving meanwhile waited for all of it. They
    live as long as the process, so walking them never frees anything.
    """
    gc.collect()
    gc.freeze()


def tune_process() -> None:
    limit_malloc_arenas()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
