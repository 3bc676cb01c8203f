"""Hostile generated programs end failed or timed out, the harness goes on, and nothing outside is touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from entrodrop_bench.evaluation.sandbox import Limits, isolation_level, run_python

needs_fs_isolation = pytest.mark.skipif(
    isolation_level() != "bwrap", reason="no bwrap: the documented fallback has no file-system protection")
LIMITS = Limits(wall_s=4, cpu_s=4, memory_bytes=512 << 20, nproc=32, file_bytes=8 << 20)


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file outside the sandbox that hostile programs try to change or delete."""
    path = tmp_path / "outside" / "precious.txt"
    path.parent.mkdir()
    path.write_text("keep me")
    return path


def _procs_matching(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
            except OSError:
                pass
    return found


def test_infinite_loop_times_out():
    r = run_python("while True:\n    pass\n", limits=LIMITS)
    assert r.timed_out and not r.ok and r.wall_s < LIMITS.wall_s + 3


def test_memory_bomb_fails():
    r = run_python("x = bytearray(2 << 30)\nprint('allocated')\n", limits=LIMITS)
    assert not r.ok and "allocated" not in r.stdout and "MemoryError" in r.stderr


def test_fork_bomb_is_contained_and_cleaned_up():
    marker = f"forkbomb-{uuid.uuid4().hex}"
    code = f"# {marker}\nimport os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    r = run_python(code, limits=Limits(wall_s=3, cpu_s=3, nproc=32))
    assert not r.ok
    deadline = time.time() + 5
    while _procs_matching(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert _procs_matching(marker) == []


def test_huge_output_is_cut():
    r = run_python("import sys\nb = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(b)\n", limits=LIMITS)
    assert not r.ok and len(r.stdout) <= 1 << 20


@needs_fs_isolation
def test_write_and_delete_outside_its_dir_fail(victim):
    code = (f"import os\ntry:\n    open({str(victim)!r}, 'w').write('pwned')\nexcept OSError as e:\n    print('write', e)\n"
            f"try:\n    os.remove({str(victim)!r})\nexcept OSError as e:\n    print('remove', e)\n"
            f"open('inside.txt', 'w').write('fine')\nprint('inside ok')\n")
    r = run_python(code, limits=LIMITS)
    assert victim.read_text() == "keep me"
    assert "write" in r.stdout and "remove" in r.stdout and "inside ok" in r.stdout


@needs_fs_isolation
def test_ctypes_system_call_cannot_touch_outside(victim):
    code = f"import ctypes\nlibc = ctypes.CDLL(None)\nlibc.system(b'rm -f {victim} ; echo pwned > {victim}.new')\n"
    run_python(code, limits=LIMITS)
    assert victim.read_text() == "keep me" and not Path(f"{victim}.new").exists()


def test_network_is_unreachable():
    if isolation_level() == "none":
        pytest.skip("no network namespace available on this machine (documented fallback)")
    code = "import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('1.1.1.1', 80))\nprint('connected')\n"
    r = run_python(code, limits=LIMITS)
    assert not r.ok and "connected" not in r.stdout and ("unreachable" in r.stderr.lower() or "Errno" in r.stderr)


@pytest.mark.parametrize("level", ["unshare", "none"])
def test_fallback_levels_still_limit(level):
    if level == "unshare" and subprocess.run(["unshare", "-r", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -r -n unavailable")
    assert run_python("while True:\n    pass\n", limits=Limits(wall_s=2, cpu_s=2), level=level).timed_out
    assert not run_python("x = bytearray(2 << 30)\n", limits=LIMITS, level=level).ok
    r = run_python("print(input()[::-1])\n", limits=LIMITS, stdin="abc\n", level=level)
    assert r.ok and r.stdout.strip() == "cba"
    if level == "unshare":
        code = "import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('1.1.1.1', 80))\n"
        assert not run_python(code, limits=LIMITS, level=level).ok


def test_harness_continues_and_parallel_programs_do_not_time_out():
    """After hostile runs, ordinary programs still pass, also many at once (no false timeouts)."""
    code = "import sys\ns = sum(i * i for i in range(200000))\nprint(int(input()) + 1)\n"
    limits = Limits(wall_s=30, cpu_s=30)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: run_python(code, stdin=f"{i}\n", limits=limits), range(16)))
    assert all(r.ok for r in results), [r.stderr for r in results if not r.ok]
    assert [int(r.stdout) for r in results] == list(range(1, 17))


def test_sandboxed_program_dies_with_the_harness(tmp_path):
    marker = f"orphan-{uuid.uuid4().hex}"
    harness = (
        "from entrodrop_bench.evaluation.sandbox import run_python, Limits\n"
        f"run_python('# {marker}\\nimport time\\ntime.sleep(120)\\n', limits=Limits(wall_s=120, cpu_s=120))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", harness])
    deadline = time.time() + 20
    while not _procs_matching(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert _procs_matching(marker), "sandboxed program never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while _procs_matching(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert _procs_matching(marker) == []


def test_cpu_limit_counts_as_a_timeout():
    """A spinning program stopped by RLIMIT_CPU (SIGXCPU) long before the wall clock is reported timed out."""
    r = run_python("while True:\n    pass\n", limits=Limits(wall_s=30, cpu_s=1))
    assert r.timed_out and not r.ok and r.wall_s < 10, r
