"""Run untrusted, model-generated programs in a separate, limited process.

evalplus's `reliability_guard` only nulls a few Python functions; generated code can still reach
`io.open`, `posix.system`, sockets and `ctypes`. Every generated program therefore runs through
`run_sandboxed`, which layers:

1. **Resource limits** (setrlimit in the child before exec, inherited by everything it starts):
   CPU seconds, address space, processes (RLIMIT_NPROC), file size (so a 1 GB print dies with
   SIGXFSZ), open files, no core files.
2. **A private working directory** (a fresh temp dir, removed afterwards unless the caller passes one).
3. **Isolation**, best available, recorded in `SandboxResult.isolation` and logged once when weaker:
   - `bwrap` (bubblewrap; Debian package `bubblewrap`): new user/pid/net/ipc/uts namespaces, the whole
     file system bound read-only, only the working dir (seen as /tmp/work) and any `writable` paths
     (/tmp/w0, ...) writable, private /tmp and /dev/shm, `--die-with-parent`; when the harness runs as
     root the program runs as `nobody`. Network: none (only a loopback-less namespace).
   - `unshare` (util-linux, `unshare -r -n -p -f --kill-child`): no network and its own pid namespace,
     but **no file-system protection** beyond the user's own permissions.
   - `none`: resource limits and the private dir only; a warning is logged.
   `ENTRODROP_SANDBOX=bwrap|unshare|none` forces a level (tests use it to exercise the fallbacks).
4. **Lifetime**: a wall-clock timeout kills the whole process group; the child gets
   PR_SET_PDEATHSIG(SIGKILL) so it dies with the harness, and bwrap/unshare's pid namespace takes every
   descendant down with it.

stdout/stderr go to files owned by the harness (outside the sandbox); only their first bytes are read back.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
OUTPUT_READ_LIMIT = 1 << 20  # bytes of stdout/stderr read back into memory


@dataclass(frozen=True)
class Limits:
    """Per-sandbox resource limits. Defaults fit one small test program."""

    wall_s: float = 10.0
    cpu_s: int = 10
    memory_bytes: int = 1 << 30
    nproc: int = 64
    file_bytes: int = 16 << 20
    open_files: int = 256


@dataclass
class SandboxResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    wall_s: float
    isolation: str
    signal: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def _probe(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@lru_cache(maxsize=1)
def isolation_level() -> str:
    """The strongest isolation this machine supports (probed once per process)."""
    forced = os.environ.get("ENTRODROP_SANDBOX")
    if forced in {"bwrap", "unshare", "none"}:
        return forced
    if shutil.which("bwrap") and _probe(["bwrap", *_bwrap_base(Path("/")), "true"]):
        return "bwrap"
    if shutil.which("unshare") and _probe(["unshare", "-r", "-n", "-p", "-f", "--kill-child", "true"]):
        log.warning("sandbox: bwrap unavailable; using `unshare -r -n -p`: no network, but generated code can write "
                    "wherever this user can (install bubblewrap for a read-only file system)")
        return "unshare"
    log.warning("sandbox: neither bwrap nor unshare works here; generated code runs with resource limits and a "
                "private directory only: it has network access and this user's file permissions")
    return "none"


SANDBOX_UID = 65534  # `nobody`: used when the harness runs as root (root ignores RLIMIT_NPROC)


def _hidden_prefixes() -> list[str]:
    """Python install dirs under a folder `nobody` cannot traverse (e.g. pyenv in a 0700 /root)."""
    import sys

    out = []
    for prefix in {sys.base_prefix, sys.prefix}:
        parts = Path(prefix).parts
        if len(parts) > 2 and not os.stat(Path(*parts[:2])).st_mode & 0o001:
            out.append((str(Path(*parts[:2])), prefix))
    return out


def _tmp_resident_paths() -> list[str]:
    """Interpreter and project folders that live under /tmp (a clone or venv there): the private /tmp
    would hide them, so they are bound back read-only."""
    import sys

    from entrodrop_bench.paths import PROJECT_ROOT

    candidates = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), PROJECT_ROOT.resolve()}
    return sorted(str(p) for p in candidates if p.is_relative_to("/tmp"))


INSIDE_WORK = "/tmp/work"  # where bwrap shows the work dir; writable paths appear as /tmp/w0, /tmp/w1, ...


def _bwrap_base(workdir: Path, writable: Sequence[Path] = ()) -> list[str]:
    # A private tmpfs /tmp holds the binds: the host paths may sit under folders `nobody` cannot cross
    # (pytest's 0700 /tmp/pytest-of-root), so programs see fixed paths instead; see `inside_paths`.
    args = ["--ro-bind", "/", "/", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm", "--proc", "/proc",
            "--perms", "1777", "--tmpfs", "/tmp"]
    if os.geteuid() == 0:
        # The program runs as `nobody`: re-expose the interpreter when it lives in a private home.
        for top, prefix in _hidden_prefixes():
            args += ["--perms", "0755", "--tmpfs", top, "--ro-bind", prefix, prefix]
    for path in _tmp_resident_paths():
        args += ["--ro-bind", path, path]
    for i, path in enumerate(writable):
        args += ["--bind", str(path), f"/tmp/w{i}"]
    args += ["--bind", str(workdir), INSIDE_WORK]
    return [*args, *_unshare_flags(), "--die-with-parent", "--new-session", "--chdir", INSIDE_WORK]


def inside_paths(level: str, workdir: Path, writable: Sequence[Path]) -> dict[str, str]:
    """Placeholders {work}, {w0}, {w1}... -> the paths the sandboxed program sees for them."""
    if level == "bwrap":
        return {"{work}": INSIDE_WORK, **{f"{{w{i}}}": f"/tmp/w{i}" for i in range(len(writable))}}
    return {"{work}": str(workdir), **{f"{{w{i}}}": str(p) for i, p in enumerate(writable)}}


def _fill(text: str, mapping: dict[str, str]) -> str:
    for key, value in mapping.items():
        text = text.replace(key, value)
    return text


def _unshare_flags() -> list[str]:
    # As root, no user namespace: the program then drops to a real `nobody` uid (see _drop_root).
    if os.geteuid() == 0:
        return ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    return ["--unshare-all"]


def _drop_root() -> list[str]:
    """As root, run the program as `nobody` so RLIMIT_NPROC binds (root is exempt from it)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return []
    return ["setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups", "--"]


def _give_to_sandbox(paths: Sequence[Path]) -> None:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return
    for root in paths:
        for dirpath, _dirs, files in os.walk(root):
            os.chown(dirpath, SANDBOX_UID, SANDBOX_UID)
            os.chmod(dirpath, 0o755)  # bwrap itself (root in its namespace) must still enter it
            for f in files:
                os.chown(os.path.join(dirpath, f), SANDBOX_UID, SANDBOX_UID, follow_symlinks=False)


def _wrap(cmd: Sequence[str], level: str, workdir: Path, writable: Sequence[Path]) -> list[str]:
    if level == "bwrap":
        return ["bwrap", *_bwrap_base(workdir, writable), "--", *_drop_root(), *cmd]
    if level == "unshare":
        return ["unshare", "-r", "-n", "-p", "-f", "--kill-child", "--", *cmd]
    return list(cmd)


def _user_processes() -> int:
    """Processes this user already runs: RLIMIT_NPROC counts them all, not just the sandbox's."""
    uid, n = os.getuid(), 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                n += os.stat(f"/proc/{pid}").st_uid == uid
    return n


def _preexec(limits: Limits, nproc: int):
    def apply() -> None:
        # Die with the harness even if it is SIGKILLed (no chance to clean up).
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        cpu = max(1, int(limits.cpu_s))
        for rlim, value in (
            (resource.RLIMIT_CPU, (cpu, cpu + 1)),
            (resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes)),
            (resource.RLIMIT_NPROC, (nproc, nproc)),
            (resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes)),
            (resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files)),
            (resource.RLIMIT_CORE, (0, 0)),
        ):
            resource.setrlimit(rlim, value)

    return apply


def _read_head(path: Path) -> str:
    with open(path, "rb") as fh:
        return fh.read(OUTPUT_READ_LIMIT).decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def run_sandboxed(
    cmd: Sequence[str],
    *,
    limits: Limits | None = None,
    workdir: Path | None = None,
    stdin: str | bytes | None = None,
    env: dict[str, str] | None = None,
    writable: Sequence[Path] = (),
    level: str | None = None,
) -> SandboxResult:
    """Run `cmd` in the sandbox; never raises for anything the program does.

    `workdir` (created if missing) is the program's cwd and its only writable place besides `writable`;
    without it a temp dir is made and removed afterwards. Under bwrap the program sees them at other
    paths: write `{work}`, `{w0}`, `{w1}`... in `cmd` and `env` values and they are filled in (relative
    paths from the cwd work everywhere). `env` replaces the
    environment (a minimal PATH/HOME/LANG one by default), so no secrets leak in.
    """
    limits = limits or Limits()
    level = level or isolation_level()
    own_dir = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="sandbox-")) if own_dir else Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    io_dir = Path(tempfile.mkdtemp(prefix="sandbox-io-"))  # outside the sandbox: not writable from inside
    run_env = env if env is not None else {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    data = stdin.encode() if isinstance(stdin, str) else stdin
    writable = [Path(p).resolve() for p in writable]
    mapping = inside_paths(level, workdir.resolve(), writable)
    run_env = {k: _fill(v, mapping) for k, v in {**run_env, "HOME": "{work}", "TMPDIR": "{work}"}.items()}
    cmd = [_fill(c, mapping) for c in cmd]
    dropped = level == "bwrap" and bool(_drop_root())
    if dropped:
        _give_to_sandbox([workdir, *writable])
    # As `nobody` the count starts near zero; as this user it includes everything the user already runs.
    nproc = limits.nproc if dropped else _user_processes() + limits.nproc
    tic = time.perf_counter()
    timed_out = False
    try:
        with open(io_dir / "out", "wb") as out, open(io_dir / "err", "wb") as err:
            proc = subprocess.Popen(
                _wrap(cmd, level, workdir.resolve(), writable),
                cwd=workdir, env=run_env, stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                stdout=out, stderr=err, preexec_fn=_preexec(limits, nproc), start_new_session=True, close_fds=True,
            )
            try:
                if data is not None:
                    try:
                        proc.stdin.write(data)
                        proc.stdin.close()
                    except (BrokenPipeError, OSError):
                        pass
                proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                # Always take the whole group down: a finished parent may have left children behind.
                _kill_group(proc)
                proc.wait()
        rc = proc.returncode
        # RLIMIT_CPU ends a spinning program with SIGXCPU, often a moment before the wall clock would: that is a
        # timeout too (bwrap reports a child's death by signal N as exit status 128 + N).
        timed_out = timed_out or rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU)
        return SandboxResult(
            returncode=None if timed_out else rc,
            stdout=_read_head(io_dir / "out"),
            stderr=_read_head(io_dir / "err"),
            timed_out=timed_out,
            wall_s=time.perf_counter() - tic,
            isolation=level,
            signal=-rc if rc is not None and rc < 0 else None,
        )
    finally:
        shutil.rmtree(io_dir, ignore_errors=True)
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def run_python(code: str, *, limits: Limits | None = None, stdin: str | None = None, workdir: Path | None = None,
               python: str | None = None, level: str | None = None) -> SandboxResult:
    """Write `code` to main.py in the sandbox's dir and run it with the harness's Python, isolated mode (-I)."""
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="sandbox-")) if own else Path(workdir)
    try:
        (workdir / "main.py").write_text(code)
        return run_sandboxed([python or _python(), "-I", "-S", "main.py"], limits=limits, workdir=workdir,
                             stdin=stdin, level=level)
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def _python() -> str:
    import sys

    return sys.executable
