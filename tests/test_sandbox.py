"""Hostile generated programs end failed or timed out, the harness goes on, and nothing outside is touched."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from entrodrop_bench.evaluate import sandbox
from entrodrop_bench.evaluate.sandbox import (
    LEVELS,
    Limits,
    WeakIsolationError,
    isolation_level,
    level_works,
)

LEVEL = isolation_level()
needs_fs_isolation = pytest.mark.skipif(
    LEVEL != "bwrap", reason=f"no bubblewrap (level `{LEVEL}`; apt-get install bubblewrap): the fallbacks do not "
                             "protect the file system")
LIMITS = Limits(wall_s=4, cpu_s=4, memory_bytes=512 << 20, nproc=32, file_bytes=8 << 20)


def run_python(code: str, **kw):
    """The limits tests run at whatever level this machine has (weak accepted: they test limits, not policy)."""
    if LEVEL not in LEVELS:
        pytest.skip(f"no usable sandbox here (`{LEVEL}`): apt-get install bubblewrap")
    return sandbox.run_python(code, **{"allow_weak": True, **kw})


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
    if LEVEL == "none":
        pytest.skip("no network namespace available on this machine (documented fallback)")
    code = "import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('1.1.1.1', 80))\nprint('connected')\n"
    r = run_python(code, limits=LIMITS)
    assert not r.ok and "connected" not in r.stdout and ("unreachable" in r.stderr.lower() or "Errno" in r.stderr)


@pytest.mark.parametrize("level", ["unshare", "none"])
def test_fallback_levels_still_limit(level):
    if not level_works(level):
        pytest.skip(f"sandbox level `{level}` cannot run this interpreter here (e.g. as root, a Python an unprivileged uid cannot reach)")
    assert run_python("while True:\n    pass\n", limits=Limits(wall_s=2, cpu_s=2), level=level, allow_weak=True).timed_out
    assert not run_python("x = bytearray(2 << 30)\n", limits=LIMITS, level=level, allow_weak=True).ok
    r = run_python("print(input()[::-1])\n", limits=LIMITS, stdin="abc\n", level=level, allow_weak=True)
    assert r.ok and r.stdout.strip() == "cba"
    if level == "unshare":
        code = "import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('1.1.1.1', 80))\n"
        assert not run_python(code, limits=LIMITS, level=level, allow_weak=True).ok


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
        "from entrodrop_bench.evaluate.sandbox import run_python, Limits\n"
        f"run_python('# {marker}\\nimport time\\ntime.sleep(120)\\n', limits=Limits(wall_s=120, cpu_s=120), "
        "allow_weak=True)\n"
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


# --------------------------------------------------------------------------- round two (issue 10)
def test_weak_isolation_is_refused_unless_accepted(monkeypatch):
    """Without bubblewrap, generated code does not run unless the caller (the config) accepts it."""
    with pytest.raises(WeakIsolationError, match="apt-get install bubblewrap"):
        sandbox.run_python("print(1)\n", level="unshare")
    monkeypatch.setenv("ENTRODROP_SANDBOX", "none")
    isolation_level.cache_clear()
    try:
        with pytest.raises(WeakIsolationError, match="eval.allow_weak_isolation"):
            sandbox.require_isolation(False)
        with pytest.raises(WeakIsolationError, match="apt-get install bubblewrap"):
            sandbox.run_python("print(1)\n")
    finally:
        monkeypatch.delenv("ENTRODROP_SANDBOX")
        isolation_level.cache_clear()


@pytest.mark.skipif(os.geteuid() != 0, reason="the drop to an unprivileged uid applies to a harness running as root")
@pytest.mark.parametrize("level", ["bwrap", "unshare", "none"])
def test_as_root_every_level_runs_the_program_as_an_unprivileged_uid(level, victim):
    """The fallbacks used to run programs as (namespaced) real root: $HOME, the checkout, /etc/shadow."""
    if not level_works(level):
        pytest.skip(f"sandbox level `{level}` unusable here")
    victim.parent.chmod(0o777)  # even a folder anyone may write: the file in it stays root's
    code = (f"import os, ctypes, sys\nprint('uid', os.getuid(), os.geteuid(), os.getgid(), os.getgroups())\n"
            f"for p in ('/etc/shadow', {str(victim)!r}):\n    try:\n        open(p, 'a').write('pwned')\n"
            f"        print('WROTE', p)\n    except OSError as e:\n        print('no', p, e.errno)\n"
            f"try:\n    open('/etc/shadow').read()\n    print('READ shadow')\nexcept OSError:\n    pass\n"
            f"sys.stdout.flush()\nctypes.CDLL(None).system(b'touch /root/.entrodrop-pwned 2>/dev/null; id -u')\n")
    r = sandbox.run_python(code, level=level, allow_weak=True, limits=LIMITS)
    assert r.ok, r
    uid = int(r.stdout.split()[1])
    assert uid >= sandbox.SANDBOX_UID_BASE and f"uid {uid} {uid} {uid} []" in r.stdout, r
    assert "WROTE" not in r.stdout and "READ shadow" not in r.stdout
    assert r.stdout.strip().splitlines()[-1] == str(uid), r  # what ctypes' system() ran is unprivileged too
    assert victim.read_text() == "keep me" and not Path("/root/.entrodrop-pwned").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="RLIMIT_NPROC binds only for the unprivileged uid root drops to")
@pytest.mark.parametrize("level", ["bwrap", "unshare"])
def test_process_limit_binds(level):
    if not level_works(level):
        pytest.skip(f"sandbox level `{level}` unusable here")
    code = ("import os, time\nn = 0\nfor _ in range(300):\n    try:\n        if os.fork() == 0:\n"
            "            time.sleep(3)\n            os._exit(0)\n        n += 1\n    except OSError:\n        break\n"
            "print('forks', n)\n")
    r = sandbox.run_python(code, level=level, allow_weak=True, limits=Limits(wall_s=8, cpu_s=8, nproc=20))
    forks = int(r.stdout.split()[-1])
    assert forks < 20, r


@pytest.mark.parametrize("level", ["bwrap", "unshare"])
def test_disk_is_bounded_and_dev_shm_private(level):
    """Its folder, /tmp and /dev/shm are size-limited tmpfs; nothing stays in the host's /dev/shm."""
    if not level_works(level):
        pytest.skip(f"sandbox level `{level}` unusable here" + (" (apt-get install bubblewrap)" if level == "bwrap" else ""))
    marker = f"entrodrop-shm-{uuid.uuid4().hex}"
    code = ("import os, sys\nchunk = b'x' * (1 << 20)\n"
            "def fill(path):\n    n = 0\n    try:\n        with open(path, 'wb') as fh:\n"
            "            for _ in range(64):\n                fh.write(chunk)\n                fh.flush()\n"
            "                n += 1\n    except OSError:\n        pass\n    return n\n"
            f"print('work', fill('a.bin'), 'shm', fill('/dev/shm/{marker}'))\n")
    limits = Limits(wall_s=20, cpu_s=20, file_bytes=1 << 30, disk_bytes=8 << 20, shm_bytes=4 << 20)
    r = sandbox.run_python(code, level=level, allow_weak=True, limits=limits)
    _, work, _, shm = r.stdout.split()
    assert int(work) <= 8 and int(shm) <= 4, r
    assert not Path(f"/dev/shm/{marker}").exists()


@contextlib.contextmanager
def _host_sockets(bases, abstract: bool = False):
    """World-writable unix sockets listening on the host, one in each folder of `bases` (and, with `abstract`, one
    in the abstract namespace, last): their addresses, removed afterwards."""
    socks, paths = [], []
    try:
        for base in bases:
            path = os.path.join(base, f"entrodrop-{uuid.uuid4().hex[:8]}.sock")
            s = socket.socket(socket.AF_UNIX)
            socks.append(s)
            s.bind(path)
            paths.append(path)
            os.chmod(path, 0o777)
            s.listen(1)
        names = []
        if abstract:
            s = socket.socket(socket.AF_UNIX)
            socks.append(s)
            names.append(f"\0entrodrop-{uuid.uuid4().hex[:8]}")
            s.bind(names[0])
            s.listen(1)
        yield [*paths, *names]
    finally:
        for s in socks:
            s.close()
        for p in paths:
            os.unlink(p)


def _connect_code(addresses) -> str:
    """A program that tries each unix socket address and prints CONNECTED, or `no` with the errno."""
    return ("import socket\n"
            f"for p in {list(addresses)!r}:\n    s = socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(p)\n"
            "        print('CONNECTED', repr(p))\n    except OSError as e:\n        print('no', e.errno)\n")


@needs_fs_isolation
def test_no_path_to_host_unix_sockets(tmp_path):
    """World-writable unix sockets on the host (here in /var/tmp, /tmp and the test's folder) are not reachable."""
    with _host_sockets(("/var/tmp", "/tmp", str(tmp_path))) as paths:
        r = run_python(_connect_code(paths), limits=LIMITS)
    assert r.ok and "CONNECTED" not in r.stdout and r.stdout.count("no ") == 3, r


@needs_fs_isolation
def test_cannot_write_anywhere_on_the_host(tmp_path):
    """Every host folder a program might try: none is writable (only its own tmpfs is)."""
    from entrodrop_bench.paths import PROJECT_ROOT

    name = f"entrodrop-pwn-{uuid.uuid4().hex[:8]}"
    targets = ["/", "/root", "/tmp", "/var/tmp", "/dev/shm", "/etc", "/usr/local", "/run", "/home", str(tmp_path),
               str(PROJECT_ROOT), sys.prefix, os.path.expanduser("~")]
    code = ("import os\n"
            f"for d in {targets!r}:\n    try:\n        os.makedirs(d, exist_ok=True)\n"
            f"        open(os.path.join(d, {name!r}), 'w').write('x')\n    except OSError:\n        pass\n"
            "print('done')\n")
    assert run_python(code, limits=LIMITS).ok
    assert not [d for d in targets if os.path.exists(os.path.join(d, name))]


# --------------------------------------------------------------------------- total memory and bounded waits
# Four processes each fill up to 600 MiB (written, so resident), then hold it; the survivors report what they hold.
_FILL = ("import os, time\nfor _ in range(3):\n    try:\n        if os.fork() == 0:\n            break\n"
         "    except OSError:\n        break\nheld, chunks = 0, []\ntry:\n    while held < (600 << 20):\n"
         "        chunks.append(b'\\x01' * (16 << 20))\n        held += 16 << 20\nexcept MemoryError:\n    pass\n"
         "time.sleep(2)\nos.write(1, f'held {os.getpid()} {held}\\n'.encode())\ntime.sleep(1)\n")


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("bound", ["cgroup", "rlimit"])
def test_multi_process_memory_fill_is_stopped_at_the_total_bound(bound, level, monkeypatch):
    """Four processes each try to hold 600 MiB; together they never hold more than total_memory_bytes (cgroup:
    the kernel's peak for the tree; rlimit: what the processes that are alive together hold)."""
    if not level_works(level):
        pytest.skip(f"sandbox level `{level}` unusable here" + (" (apt-get install bubblewrap)" if level == "bwrap" else ""))
    if bound == "cgroup" and not sandbox.cgroups_work():
        pytest.skip("no memory cgroup can be made here (not root, or no delegated cgroup v2): the rlimit budget applies")
    if bound == "rlimit":
        monkeypatch.setenv("ENTRODROP_SANDBOX_CGROUP", "0")
    total = 768 << 20
    limits = Limits(wall_s=30, cpu_s=30, memory_bytes=1 << 30, nproc=8, total_memory_bytes=total)
    r = sandbox.run_python(_FILL, limits=limits, level=level, allow_weak=True)
    assert r.memory_bound == bound
    held = [int(line.split()[2]) for line in r.stdout.splitlines() if line.startswith("held ")]
    assert sum(held) <= total, (held, r.stderr[-500:])
    if bound == "cgroup":  # the kernel kills processes of the tree (any of them, the first one included)
        assert r.memory_peak is not None and r.memory_peak <= total and r.oom_killed, r
    else:  # each process stops at its share with a MemoryError and lives on
        assert held and sum(held) < 4 * (600 << 20), r


def test_rlimit_budget_never_exceeds_the_total():
    for memory, nproc, total in [(1 << 30, 64, 2 << 30), (16 << 30, 80, 8 << 30), (512 << 20, 32, 2 << 30), (1 << 30, 1, 4 << 30)]:
        per, procs = sandbox.rlimit_budget(Limits(memory_bytes=memory, nproc=nproc, total_memory_bytes=total), "rlimit")
        assert per * procs <= total and per <= memory and procs <= nproc and per >= Limits().min_process_memory


def test_memory_cgroups_are_removed_after_each_run(monkeypatch):
    if not sandbox.cgroups_work():
        pytest.skip("no memory cgroup can be made here: nothing to remove")
    # The cgroups this run made, not every sandbox cgroup under the parent: tests in another xdist worker share
    # the parent and may hold one of their own at this moment.
    made: list[Path] = []
    create = sandbox.MemoryCgroup.create.__func__

    def recording(cls, limit: int):
        group = create(cls, limit)
        if group is not None:
            made.append(group.path)
        return group

    monkeypatch.setattr(sandbox.MemoryCgroup, "create", classmethod(recording))
    run_python("import os\nfor _ in range(3):\n    os.fork()\nimport time\ntime.sleep(30)\n", limits=Limits(wall_s=2, cpu_s=2))
    assert made, "the run made no memory cgroup although cgroups work here"
    assert not [p for p in made if p.exists()]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("code", ["import time\ntime.sleep(60)\n",  # never reads stdin, never writes
                                  "import sys\nwhile True:\n    sys.stdout.write('y')\n    sys.stdout.flush()\n"])
def test_no_wait_outlives_the_wall_clock(level, code):
    """16 MiB on stdin (far more than a pipe holds) to a program that never reads it, or one that writes forever:
    the harness is back within the wall clock plus a small margin, and reports a timeout."""
    if not level_works(level):
        pytest.skip(f"sandbox level `{level}` unusable here" + (" (apt-get install bubblewrap)" if level == "bwrap" else ""))
    tic = time.monotonic()
    r = sandbox.run_python(code, stdin="x" * (16 << 20), level=level, allow_weak=True,
                           limits=Limits(wall_s=2, cpu_s=30, file_bytes=1 << 40))
    assert time.monotonic() - tic < 2 + 3
    assert r.timed_out and r.returncode is None


@pytest.mark.skipif(os.geteuid() != 0, reason="as another user than root the fallback runs programs as this user, "
                                              "who owns the claim locks (documented limit)")
@pytest.mark.parametrize("level", ["unshare", "none"])
def test_weak_fallback_cannot_hold_a_claim_lock(level, tmp_path):
    """A program under the weak fallback tries to flock another checkpoint's claim lock (made by the harness's
    own `_claim`, in a world-traversable folder): it cannot even open it."""
    import tempfile

    from entrodrop_bench.evaluate.stage import _claim

    if not level_works(level):
        pytest.skip(f"sandbox level `{level}` cannot run this interpreter here")
    store = Path(tempfile.mkdtemp(prefix="entrodrop-claims-"))
    store.chmod(0o755)

    class _Layout:
        def store_lock(self, run, seed, step):
            return store / run / ".lock"

    try:
        lock = _claim(_Layout(), "r", 0, 1, blocking=False)
        path = store / "r" / ".lock"
        (store / "r").chmod(0o755)
        lock.release()
        code = (f"import fcntl\ntry:\n    fh = open({str(path)!r}, 'rb')\n    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                "    print('HELD')\nexcept OSError as e:\n    print('refused', e.errno)\n")
        r = sandbox.run_python(code, level=level, allow_weak=True, limits=LIMITS)
        assert "HELD" not in r.stdout and "refused" in r.stdout, r
        assert _claim(_Layout(), "r", 0, 1, blocking=False) is not None
    finally:
        import shutil

        shutil.rmtree(store, ignore_errors=True)


@pytest.mark.parametrize("level", ["bwrap", "unshare"])
def test_host_unix_sockets_unreachable_at_each_level(level, tmp_path):
    """World-writable host sockets (/var/tmp, /tmp, /run, the test's folder) and an abstract one: bubblewrap does
    not show them; `unshare` covers each existing path with /dev/null and its network namespace hides abstract
    ones. (`none` reaches them: a documented limit.)"""
    if not level_works(level):
        pytest.skip(f"sandbox level `{level}` unusable here" + (" (apt-get install bubblewrap)" if level == "bwrap" else ""))
    bases = [b for b in ("/var/tmp", "/tmp", "/run", str(tmp_path)) if os.access(b, os.W_OK)]
    with _host_sockets(bases, abstract=True) as paths:
        r = sandbox.run_python(_connect_code(paths), level=level, allow_weak=True, limits=LIMITS)
    assert r.ok and "CONNECTED" not in r.stdout and r.stdout.count("no ") == len(paths), r


@needs_fs_isolation
def test_host_files_are_not_readable(victim):
    """Under bubblewrap host files outside the few bound read-only folders are simply not there: the test's own
    file, /etc/hostname, /etc/shadow, /home, /var (the interpreter's own folders are bound, read-only)."""
    victim.chmod(0o644)
    code = (f"import os\nfor p in ({str(victim)!r}, '/etc/hostname', '/etc/shadow', '/home', '/var'):\n"
            "    print(p, os.path.exists(p))\n")
    r = run_python(code, limits=LIMITS)
    assert r.ok and "True" not in r.stdout and r.stdout.count("False") == 5, r
