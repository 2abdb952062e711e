"""The process tuning the CLI applies at start-up, checked in fresh interpreters."""

from __future__ import annotations

import os
import subprocess
import sys

from service.support.tuning import ARENAS, SWITCH_INTERVAL_S

# Eight threads allocating at once: glibc gives threads that contend an arena of their own; the probe
# counts the arenas in malloc_info's XML report.
_PROBE = """
import ctypes, threading, re, sys, tempfile
from service.support.tuning import limit_malloc_arenas
import os
applied = limit_malloc_arenas(int(os.environ.get("PRODUCT_SYNC_PROBE_ARENAS", "2")))
blocks = []
def grab():
    # SQLite allocates with the GIL released, as aiosqlite's thread does in the service.
    import sqlite3
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (x TEXT)")
    db.executemany("INSERT INTO t VALUES (?)", (("x" * 500,) for _ in range(20_000)))
    db.execute("CREATE INDEX i ON t (x)")
    blocks.append(db)
threads = [threading.Thread(target=grab) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fdopen.restype = ctypes.c_void_p
with tempfile.TemporaryFile("w+") as out:
    stream = libc.fdopen(out.fileno(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fflush(ctypes.c_void_p(stream))
    out.seek(0)
    arenas = len(re.findall(r'<heap nr="', out.read()))
print(applied, arenas)
"""


def _probe(env: dict[str, str]) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    applied, arenas = done.stdout.split()
    return applied, int(arenas)


def test_the_service_caps_malloc_arenas_for_its_threads() -> None:
    env = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    applied, arenas = _probe(env)
    assert applied == "True"
    assert arenas <= ARENAS


def test_without_the_cap_the_same_threads_take_more_arenas() -> None:
    # The probe itself can tell: the same work with the cap switched off (a no-op limit) spreads wider.
    env = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    env["PRODUCT_SYNC_PROBE_ARENAS"] = "64"
    _, arenas = _probe(env)
    assert arenas > ARENAS


def test_the_cli_start_up_shortens_the_gil_switch_interval() -> None:
    probe = (
        "import sys\nfrom service.support.tuning import tune_process\n"
        "tune_process()\nprint(sys.getswitchinterval())"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert float(done.stdout) == SWITCH_INTERVAL_S < 0.005  # CPython's default is 5 ms


def test_start_up_objects_are_frozen_out_of_full_collections() -> None:
    # In a fresh interpreter, so this test process keeps its own collector as it is.
    probe = (
        "import gc, aiohttp.web\nfrom service.support.tuning import freeze_start_up_objects\n"
        "before = gc.get_freeze_count()\nfreeze_start_up_objects()\n"
        "print(before, gc.get_freeze_count(), len(gc.get_objects(2)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    before, frozen, left = (int(value) for value in done.stdout.split())
    assert before == 0
    assert frozen > 10_000  # the modules, classes and functions imported so far
    assert left < frozen / 10  # what a full collection still walks


# Memory freed in a helper thread while every 16th block stays alive: no free() can give those pages
# back, only a trim can.
_FRAGMENTED = """
import threading
from service.support.tuning import release_free_memory
def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
keep = []
def churn():
    blocks = [bytes(700) + i.to_bytes(4, "little") for i in range(150_000)]
    keep.extend(blocks[::16])
    blocks.clear()
thread = threading.Thread(target=churn)
thread.start()
thread.join()
before = rss_mib()
released = release_free_memory()
print(released, before, rss_mib())
"""


def test_release_free_memory_gives_freed_heap_pages_back() -> None:
    done = subprocess.run([sys.executable, "-c", _FRAGMENTED], capture_output=True, text=True, check=True)
    released, before, after = done.stdout.split()
    assert released == "True"
    assert float(after) < float(before) - 30  # about 100 MiB were freed, scattered among live blocks


# A worker's chunks: megabytes allocated, written and freed, again and again, each chunk a little larger
# than the one before (chunks differ in size). The page faults of each chunk after the first say whether
# the freed memory was kept for it or given back to the OS.
_CHUNKS = """
import os, resource
from service.support.tuning import keep_freed_memory
kept = keep_freed_memory() if os.environ.get("PRODUCT_SYNC_PROBE_KEEP") else None
faults = []
for chunk in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = b"x" * ((8 << 20) + chunk * (64 << 10))
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, *faults)
"""


def _chunk_faults(keep: bool) -> tuple[str, list[int]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    if keep:
        env["PRODUCT_SYNC_PROBE_KEEP"] = "1"
    probe = [sys.executable, "-c", _CHUNKS]
    done = subprocess.run(probe, env=env, capture_output=True, text=True, check=True)
    kept, *faults = done.stdout.split()
    return kept, [int(count) for count in faults]


def test_a_worker_keeps_freed_chunk_memory_for_the_next_chunk() -> None:
    kept, faults = _chunk_faults(keep=True)
    assert kept == "True"
    pages = (8 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert faults[0] >= pages / 2  # the first chunk faults its memory in
    assert max(faults[1:]) < pages / 20  # the next ones reuse it


def test_by_default_glibc_gives_a_freed_chunk_back_and_faults_it_in_again() -> None:
    _, faults = _chunk_faults(keep=False)
    pages = (8 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert min(faults[1:]) >= pages / 2
