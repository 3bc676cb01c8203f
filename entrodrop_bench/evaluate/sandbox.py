"""Run untrusted, model-generated programs in a separate, limited process.

evalplus's `reliability_guard` only nulls a few Python functions; generated code can still reach
`io.open`, `posix.system`, sockets and `ctypes`. Every generated program therefore runs through
`run_sandboxed`, which layers:

1. **Resource limits** (setrlimit in the child before exec, inherited by everything it starts):
   CPU seconds, address space, processes (RLIMIT_NPROC), file size (so a 1 GB print dies with
   SIGXFSZ), open files, no core files.
2. **Files in, nothing back but its output.** The program gets a fresh private folder per call: its
   inputs (`inputs=`) read-only at `{in}`, and a writable, size-limited working folder at `{work}`
   (its cwd, HOME and TMPDIR). Nothing of the host is writable, so nothing a program leaves behind can
   be read back or written through by the harness: results come back only through its stdout and
   stderr, which go to files the harness opened and reads through those open descriptors.
3. **Isolation** (`isolation_level()`, recorded in `SandboxResult.isolation`):
   - `bwrap` (bubblewrap; Debian package `bubblewrap`), the only *strong* level: new pid/net/ipc/uts
     (and, for a non-root harness, user) namespaces; an empty root in which only /usr, the /lib and
     /bin links, a few /etc files and the Python installation are bound read-only at their own paths
     (missing parent folders are made 0755, so a venv or interpreter under any folder, /tmp/a/b or a
     0700 home, works), a private size-limited tmpfs at /tmp (holding `{in}` and `{work}`) and
     another at /dev/shm, no /run, /var, /home or host /tmp (so no host unix socket is reachable), and
     `--die-with-parent`. When the harness runs as root the program runs as an unprivileged uid (setpriv).
   - `unshare` (util-linux): no network, its own pid and mount namespaces, a size-limited tmpfs over
     its working folder and a private /dev/shm, /dev/null bound over every host unix socket path that
     exists when it starts, but the host file system is otherwise visible with the
     permissions of the user the program runs as (as root: dropped to an unprivileged uid first).
   - `none`: resource limits and the private folder only (as root: dropped to an unprivileged uid).
   The weak levels run only when the caller passes `allow_weak=True` (a config sets
   `eval.allow_weak_isolation`); otherwise `WeakIsolationError` says how to install bubblewrap.
   `ENTRODROP_SANDBOX=bwrap|unshare|none` forces a level (tests use it to exercise the fallbacks and the
   machine without bubblewrap).
4. **Lifetime**: the harness never writes to or reads from a running program (stdin is a read-only file,
   stdout/stderr are files), so its only wait is for the exit, bounded by the wall clock; a wall-clock timeout kills the whole process group; the child gets
   PR_SET_PDEATHSIG(SIGKILL) so it dies with the harness, and the pid namespace takes every descendant
   down with it. The program never runs as a pid namespace's init (which ignores SIGXCPU).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

from entrodrop_bench.errors import UserError

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
OUTPUT_READ_LIMIT = 1 << 20  # bytes of stdout/stderr read back into memory by default
STRONG = "bwrap"
LEVELS = ("bwrap", "unshare", "none")
# As root, each run's program gets an unprivileged uid/gid of its own from this range (like `nobody`, it
# owns no file on the host), so RLIMIT_NPROC (which root ignores) counts only that run's processes, and
# concurrent runs cannot signal or write to one another.
SANDBOX_UID_BASE, SANDBOX_UID_SPAN = 2_100_000_000, 1 << 24
INSIDE_IN, INSIDE_WORK = "/tmp/in", "/tmp/work"  # where bwrap shows the inputs and the working folder
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; `make setup` does it as root)"


class WeakIsolationError(UserError):
    """Generated code would run without a real sandbox and the config did not accept that."""


@dataclass(frozen=True)
class Limits:
    """Per-sandbox resource limits. Defaults fit one small test program."""

    wall_s: float = 10.0
    cpu_s: int = 10
    memory_bytes: int = 1 << 30
    nproc: int = 64
    file_bytes: int = 16 << 20
    open_files: int = 256
    disk_bytes: int = 64 << 20
    """Size of the program's private tmpfs (its inputs and working folder)."""
    shm_bytes: int = 16 << 20
    """Size of its private /dev/shm."""
    total_memory_bytes: int = 2 << 30
    """Memory of the whole process tree together (see `memory_bound`): a memory cgroup where the machine gives
    one, else the per-process limit is lowered so that `nproc` processes cannot hold more than this together."""
    min_process_memory: int = 256 << 20
    """Without a cgroup, no process gets less address space than this (a bare Python needs ~30 MiB, one that
    imports evalplus ~400 MiB); the process limit is lowered instead."""


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
    memory_bound: str = ""
    """How the tree's total memory was bounded: `cgroup` or `rlimit` (see `memory_bound`)."""
    oom_killed: bool = False
    """The memory cgroup killed a process of the tree (its total reached `Limits.total_memory_bytes`)."""
    memory_peak: int | None = None
    """The tree's peak memory as its cgroup counted it (None without a cgroup)."""
    output_limited: bool = False
    """stdout or stderr reached `Limits.file_bytes` (measured on the harness's own descriptors)."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


# --------------------------------------------------------------------------- which level
def _drop_root(uid: int) -> None:
    """In a forked child: as root, become the run's unprivileged uid, with no supplementary groups."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


@cache
def level_works(level: str) -> bool:
    """Whether this interpreter runs through `level` here (probed once per process and level)."""
    if level == "bwrap" and not (shutil.which("bwrap") and (os.geteuid() != 0 or shutil.which("setpriv"))):
        return False
    if level == "unshare" and not shutil.which("unshare"):
        return False
    try:
        r = run_sandboxed([sys.executable, "-I", "-S", "-c", "print('ok')"], level=level, allow_weak=True,
                          limits=Limits(wall_s=30, cpu_s=30))
    except OSError as exc:
        log.debug("sandbox level %s unusable here: %s", level, exc)
        return False
    if not (r.ok and r.stdout.strip() == "ok"):
        log.debug("sandbox level %s unusable here: %s", level, r.stderr[-300:])
    return r.ok and r.stdout.strip() == "ok"


@lru_cache(maxsize=1)
def isolation_level() -> str:
    """The strongest isolation this machine supports: `bwrap`, `unshare`, `none`, or `unavailable` (not
    even `none` works, e.g. as root with the interpreter in a folder an unprivileged uid cannot reach).
    `ENTRODROP_SANDBOX` forces one (tests use it to act out a machine without bubblewrap)."""
    forced = os.environ.get("ENTRODROP_SANDBOX")
    if forced in LEVELS:
        return forced
    return next((level for level in LEVELS if level_works(level)), "unavailable")


def require_isolation(allow_weak: bool, what: str = "generated code", level: str | None = None) -> str:
    """The level code will run at; raises WeakIsolationError when it is weak and not accepted."""
    level = level or isolation_level()
    if level == "unavailable":
        raise WeakIsolationError(
            f"refusing to run {what}: no sandbox works on this machine (no working bubblewrap, and the "
            f"fallbacks cannot run this Python as an unprivileged user). To fix: {INSTALL_HINT}.")
    if level != STRONG and not allow_weak:
        raise WeakIsolationError(
            f"refusing to run {what}: no real sandbox on this machine (bubblewrap `bwrap` is "
            f"{'not used here' if os.environ.get('ENTRODROP_SANDBOX') or level_works(STRONG) else 'missing or not working'}; "
            f"the best available isolation is `{level}`, which leaves the host file system open to it). "
            f"To fix: {INSTALL_HINT}. To accept the weaker isolation knowingly, set "
            f"eval.allow_weak_isolation: true (it is then recorded in every result and in the tables' notes).")
    if level != STRONG:
        log.warning("sandbox: running %s with weak isolation `%s` (eval.allow_weak_isolation is set); %s",
                    what, level, INSTALL_HINT)
    return level


# --------------------------------------------------------------------------- staging (files in)
class _Staging:
    """Per-call harness-owned temp folder: stdout/stderr files, and for the weak levels the program's
    `in` (read-only to it when it runs as an unprivileged uid) and `work` folders. Removed afterwards (rmtree does not
    follow symlinks)."""

    def __enter__(self) -> _Staging:
        self.root = Path(tempfile.mkdtemp(prefix="sandbox-", dir=_traversable_tmp()))
        self.fds: list[int] = []
        self.uid = SANDBOX_UID_BASE + secrets.randbelow(SANDBOX_UID_SPAN)
        return self

    def __exit__(self, *exc) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.root, ignore_errors=True)

    def memfd(self, name: str, data: bytes) -> int:
        """The bytes as an anonymous file: what bwrap copies in is exactly what the harness checked."""
        fd = os.memfd_create(name.replace("/", "_"), os.MFD_CLOEXEC)
        self.fds.append(fd)
        view, done = memoryview(data), 0
        while done < len(data):
            done += os.write(fd, view[done:])
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def host_dirs(self, inputs: Mapping[str, bytes]) -> tuple[Path, Path]:
        """Weak levels: inputs written into `in` (root-owned 0755/0644 when the program runs as an unprivileged uid),
        and an empty `work` owned by the program's user."""
        self.root.chmod(0o711)
        indir, work = self.root / "in", self.root / "work"
        indir.mkdir(mode=0o755)
        for name, data in inputs.items():
            path = indir / name
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            path.write_bytes(data)
            path.chmod(0o644)
        work.mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(work, self.uid, self.uid)
        return indir, work


def _traversable_tmp() -> str:
    """A temp base every user can cross (the program may run as another uid): $TMPDIR if so, else /tmp."""
    base = Path(tempfile.gettempdir()).resolve()
    for part in [base, *base.parents]:
        if not os.stat(part).st_mode & 0o001:
            return "/tmp"
    return str(base)


# --------------------------------------------------------------------------- bwrap
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "passwd", "group",
        "nsswitch.conf", "mime.types")


def _python_paths() -> list[str]:
    """Host folders the interpreter needs: its prefixes and import paths (not the checkout: programs and
    the evalplus driver are passed in as files), deepest-covered first removed."""
    from entrodrop_bench.paths import PROJECT_ROOT

    project = PROJECT_ROOT.resolve()
    cands = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(Path(os.path.realpath(sys.executable)).parent)}
    for entry in sys.path:
        p = Path(entry).resolve() if entry else None
        if p is not None and p.exists() and not p.is_relative_to(project):
            cands.add(str(p if p.is_dir() else p.parent))
    out: list[str] = []
    for path in sorted({str(Path(c).resolve()) for c in cands}, key=len):
        p = Path(path)
        if p.is_dir() and not p.is_relative_to("/usr") and not any(p.is_relative_to(o) for o in out):
            out.append(path)
    # A venv inside the checkout is needed although the checkout is not.
    return out


def _bind_at_own_path(path: str, made: set[str]) -> list[str]:
    """Bind `path` read-only at the same path, making each missing parent 0755 in the sandbox's root."""
    args = []
    parts = Path(path).parts
    for i in range(2, len(parts)):
        parent = str(Path(*parts[:i]))
        if parent not in made and parent not in ("/tmp",):
            args += ["--perms", "0755", "--dir", parent]
            made.add(parent)
    return args + ["--ro-bind", path, path]


def _bwrap_args(stage: _Staging, limits: Limits, inputs: Mapping[str, bytes]) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/" + top)
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    for name in _ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    args += ["--dev", "/dev", "--proc", "/proc",
             "--perms", "1777", "--size", str(limits.shm_bytes), "--tmpfs", "/dev/shm",
             "--perms", "1777", "--size", str(limits.disk_bytes), "--tmpfs", "/tmp",
             "--perms", "0755", "--dir", INSIDE_IN, "--perms", "0777", "--dir", INSIDE_WORK]
    for name, data in inputs.items():
        parent = str(Path(INSIDE_IN, name).parent)
        if parent != INSIDE_IN:
            args += ["--perms", "0755", "--dir", parent]
        args += ["--perms", "0444", "--ro-bind-data", str(stage.memfd(name, data)), f"{INSIDE_IN}/{name}"]
    made: set[str] = set()
    for path in _python_paths():
        args += _bind_at_own_path(path, made)
    unshare = (["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
               if os.geteuid() == 0 else ["--unshare-all"])  # as root, no user namespace: setpriv to an unprivileged uid
    return [*args, *unshare, "--die-with-parent", "--new-session", "--chdir", INSIDE_WORK, "--"]


def _setpriv(uid: int) -> list[str]:
    """As root (no user namespace), run the program as an unprivileged uid, so RLIMIT_NPROC binds and no file of
    root's is readable."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


# --------------------------------------------------------------------------- unshare
# sh, not the program, is the pid namespace's init (init ignores SIGXCPU, so RLIMIT_CPU would only end
# it with SIGKILL, which unshare then misreports). It first mounts the private tmpfs folders.
_UNSHARE_INIT = ('mount -t tmpfs -o "size=$1,mode=0777" tmpfs "$3" && mount -t tmpfs -o "size=$2,mode=1777" '
                 'tmpfs /dev/shm || exit 125; cd "$3" || exit 125; shift 3; "$@"; exit $?')


def _host_socket_paths(limit: int = 4096) -> list[str]:
    """Unix sockets bound to a path on the host (from /proc/net/unix, as the harness sees it): the `unshare`
    level covers each with /dev/null in its mount namespace, so a program cannot connect to them (sockets
    bound after the program starts are not covered; abstract sockets are out of reach through the network
    namespace)."""
    import stat as stat_

    found: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            fields = line.split(None, 7)
            path = fields[7] if len(fields) == 8 else ""
            if path.startswith("/") and path not in found:
                with contextlib.suppress(OSError):
                    if stat_.S_ISSOCK(os.lstat(path).st_mode):
                        found.append(path)
            if len(found) >= limit:
                break
    return found


def _cover_sockets() -> str:
    """Shell lines that bind /dev/null over every host socket path (failures ignored: a path may be gone)."""
    import shlex

    return "".join(f"mount --bind /dev/null {shlex.quote(p)} 2>/dev/null; " for p in _host_socket_paths())


def _hidden_tops(paths: list[str]) -> dict[str, list[str]]:
    """Folder an unprivileged uid cannot cross -> the interpreter paths below it (e.g. /root -> [pyenv prefix])."""
    tops: dict[str, list[str]] = {}
    for path in paths:
        for anc in reversed(Path(path).parents):
            if anc != Path("/") and not os.stat(anc).st_mode & 0o001:
                tops.setdefault(str(anc), []).append(path)
                break
    return tops


def _root_init(stage: Path, uid: int) -> str:
    """As root in a fresh mount namespace: show the interpreter to an unprivileged uid where it sits under a folder
    it cannot cross (a tmpfs over that folder, the prefix bound back read-only), then run the program as
    an unprivileged uid, as a child of this shell."""
    lines = ['set -e', 'mount -t tmpfs -o "size=$1,mode=0700" tmpfs "$3"', f'chown {uid}:{uid} "$3"',
             'mount -t tmpfs -o "size=$2,mode=1777" tmpfs /dev/shm']
    for i, (top, paths) in enumerate(_hidden_tops(_python_paths()).items()):
        for j, path in enumerate(paths):
            lines += [f"mkdir -p '{stage}/b{i}_{j}'", f"mount --bind '{path}' '{stage}/b{i}_{j}'"]
        lines.append(f"mount -t tmpfs -o mode=0755 tmpfs '{top}'")
        for j, path in enumerate(paths):
            lines += [f"mkdir -p '{path}'", f"mount --bind '{stage}/b{i}_{j}' '{path}'",
                      f"mount -o remount,bind,ro '{path}'"]
    lines += ['set +e', _cover_sockets(), 'cd "$3" || exit 125', 'shift 3',
              f'setpriv --reuid={uid} --regid={uid} --clear-groups -- "$@"', 'exit $?']
    return "\n".join(lines)


def _unshare_prefix(limits: Limits, work: str, stage: Path, uid: int) -> list[str]:
    if os.geteuid() == 0:  # no user namespace (it would map to real root): mounts as root, then its own uid
        head, script = ["unshare", "-m", "-n", "-p", "-f", "--mount-proc", "--kill-child",
                        "--propagation", "private"], _root_init(stage, uid)
    else:
        head, script = (["unshare", "-r", "-m", "-n", "-p", "-f", "--mount-proc", "--kill-child"],
                        _cover_sockets() + _UNSHARE_INIT)
    return [*head, "--", "/bin/sh", "-c", script, "sh", str(limits.disk_bytes), str(limits.shm_bytes), work]


# --------------------------------------------------------------------------- total memory
CGROUP_PREFIX = "entrodrop-sandbox-"


def _own_cgroup_dir(version: int) -> Path | None:
    """This process's memory cgroup folder on the host: cgroup v2 (the unified hierarchy) or v1 (the memory one)."""
    mounts: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fstype, _, opts = (right.split(" ") + ["", "", ""])[:3]
            point = left.split(" ")[4]
            if fstype == "cgroup2":
                mounts.setdefault("v2", point)
            elif fstype == "cgroup" and "memory" in opts.split(","):
                mounts.setdefault("v1", point)
    mount = mounts.get(f"v{version}")
    if mount is None:
        return None
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if (version == 2 and controllers == "") or (version == 1 and "memory" in controllers.split(",")):
                return Path(mount) / path.lstrip("/")
    return None


class MemoryCgroup:
    """A fresh memory cgroup (v2 where its memory controller is delegated here, else v1) for one sandbox's tree.

    The sandbox's first process joins it before exec, so every descendant is charged to it; the kernel's OOM
    killer ends processes of the tree when their total reaches the limit. Only root (or a user the cgroup
    was delegated to) can create one; `create` returns None where the machine does not allow it."""

    def __init__(self, path: Path, version: int):
        self.path, self.version = path, version

    @classmethod
    def create(cls, limit: int) -> MemoryCgroup | None:
        if os.environ.get("ENTRODROP_SANDBOX_CGROUP") == "0":  # tests act out a machine without cgroups
            return None
        for version in (2, 1):
            parent = _own_cgroup_dir(version)
            if parent is None or not parent.is_dir():
                continue
            if version == 2 and "memory" not in _read(parent / "cgroup.subtree_control").split():
                continue  # v2 without the memory controller delegated below this process's cgroup
            path = parent / f"{CGROUP_PREFIX}{secrets.token_hex(6)}"
            try:
                path.mkdir()
            except OSError:
                continue
            group = cls(path, version)
            try:
                if version == 2:
                    (path / "memory.max").write_text(str(limit))
                    with contextlib.suppress(OSError):
                        (path / "memory.swap.max").write_text("0")
                else:
                    (path / "memory.limit_in_bytes").write_text(str(limit))
                    with contextlib.suppress(OSError):  # absent without swap accounting
                        (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
                return group
            except OSError as exc:
                log.debug("memory cgroup %s unusable: %s", path, exc)
                group.close()
        return None

    @property
    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def oom_kills(self) -> int:
        """How many processes the kernel killed for this cgroup's limit."""
        text = _read(self.path / ("memory.events" if self.version == 2 else "memory.oom_control"))
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value or 0)
        return 0

    def peak(self) -> int | None:
        """The most memory the tree held at once, as the kernel counted it."""
        text = _read(self.path / ("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes")).strip()
        return int(text) if text.isdigit() else None

    def close(self) -> None:
        """Kill whatever of the tree is still in it, then remove it (bounded: a few seconds at most)."""
        deadline = time.monotonic() + 5
        while True:
            pids = [int(p) for p in _read(self.path / "cgroup.procs").split()]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                log.warning("memory cgroup %s still holds %s after 5 s", self.path, pids)
                return
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@cache
def cgroups_work() -> bool:
    """Whether a memory cgroup can be made here (probed once per process)."""
    group = MemoryCgroup.create(64 << 20)
    if group is None:
        return False
    group.close()
    return True


def memory_bound() -> str:
    """`cgroup`: the tree's total memory is one memory cgroup's limit; `rlimit`: no cgroup can be made here (not
    root, no delegated cgroup v2), so the per-process address-space limit and the process limit are both cut
    (`rlimit_budget`) until their product is at most `Limits.total_memory_bytes`."""
    return "cgroup" if os.environ.get("ENTRODROP_SANDBOX_CGROUP") != "0" and cgroups_work() else "rlimit"


def rlimit_budget(limits: Limits, bound: str) -> tuple[int, int]:
    """(address space per process, processes): as configured under a cgroup; without one, each process gets
    `total // nproc` (never less than `Limits.min_process_memory`) and only as many processes as fit the total."""
    if bound == "cgroup":
        return limits.memory_bytes, limits.nproc
    memory = min(limits.memory_bytes, max(limits.min_process_memory, limits.total_memory_bytes // max(1, limits.nproc)))
    return memory, max(1, min(limits.nproc, limits.total_memory_bytes // memory))


# --------------------------------------------------------------------------- running
def _user_processes() -> int:
    """Processes this user already runs: RLIMIT_NPROC counts them all, not just the sandbox's."""
    uid, n = os.getuid(), 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                n += os.stat(f"/proc/{pid}").st_uid == uid
    return n


def _preexec(limits: Limits, nproc: int, drop_to: int | None, memory: int, cgroup_procs: str | None):
    def apply() -> None:
        # Die with the harness even if it is SIGKILLed (no chance to clean up).
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if cgroup_procs is not None:  # before exec: everything the program starts is charged to the cgroup
            with open(cgroup_procs, "w") as fh:
                fh.write(str(os.getpid()))
        cpu = max(1, int(limits.cpu_s))
        for rlim, value in (
            (resource.RLIMIT_CPU, (cpu, cpu + 1)),
            (resource.RLIMIT_AS, (memory, memory)),
            (resource.RLIMIT_NPROC, (nproc, nproc)),
            (resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes)),
            (resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files)),
            (resource.RLIMIT_CORE, (0, 0)),
        ):
            resource.setrlimit(rlim, value)
        if drop_to is not None:
            _drop_root(drop_to)

    return apply


def _read_head(fh, limit: int) -> str:
    """Read back through the descriptor the harness opened: the path may have been replaced meanwhile."""
    fh.seek(0)
    return fh.read(limit).decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _fill(text: str, mapping: dict[str, str]) -> str:
    for key, value in mapping.items():
        text = text.replace(key, value)
    return text


def run_sandboxed(
    cmd: Sequence[str],
    *,
    limits: Limits | None = None,
    inputs: Mapping[str, bytes] | None = None,
    stdin: str | bytes | None = None,
    env: dict[str, str] | None = None,
    level: str | None = None,
    allow_weak: bool = False,
    output_limit: int = OUTPUT_READ_LIMIT,
) -> SandboxResult:
    """Run `cmd` in a fresh sandbox; never raises for anything the program does.

    `inputs` maps relative names to bytes, shown read-only under `{in}`; the program's cwd is `{work}`,
    empty, writable and size-limited (`Limits.disk_bytes`), gone afterwards. Write `{in}` and `{work}` in `cmd`
    and `env` values and they are filled in. `env` replaces the environment (a minimal PATH/LANG one by
    default), so no secrets leak in. Raises WeakIsolationError when the level is weak and `allow_weak`
    is not set. Only the first `output_limit` bytes of stdout and stderr are read back.
    """
    limits = limits or Limits()
    level = level or isolation_level()
    if level not in LEVELS or (level != STRONG and not allow_weak):
        require_isolation(allow_weak, level=level)
    inputs = dict(inputs or {})
    data = stdin.encode() if isinstance(stdin, str) else stdin
    run_env = env if env is not None else {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    with _Staging() as stage:
        if level == "bwrap":
            mapping = {"{in}": INSIDE_IN, "{work}": INSIDE_WORK}
            wrapped_prefix, cwd = ["bwrap", *_bwrap_args(stage, limits, inputs), *_setpriv(stage.uid)], "/"
            drop = None
        else:
            indir, work = stage.host_dirs(inputs)
            mapping = {"{in}": str(indir), "{work}": str(work)}
            wrapped_prefix = _unshare_prefix(limits, str(work), stage.root, stage.uid) if level == "unshare" else []
            cwd, drop = str(work), stage.uid if level == "none" else None
        run_env = {k: _fill(v, mapping) for k, v in {**run_env, "HOME": "{work}", "TMPDIR": "{work}"}.items()}
        full = [*wrapped_prefix, *(_fill(c, mapping) for c in cmd)]
        # stdin is a read-only file, not a pipe: the harness never writes to the program, so a program that never
        # reads cannot hold the harness beyond its wall clock.
        if data is not None:
            (stage.root / "stdin").write_bytes(data)
        stdin_fd = os.open(stage.root / "stdin" if data is not None else os.devnull, os.O_RDONLY)
        stage.fds.append(stdin_fd)  # closed with the staging folder
        group = MemoryCgroup.create(limits.total_memory_bytes) if memory_bound() == "cgroup" else None
        bound = "cgroup" if group is not None else "rlimit"
        memory, procs = rlimit_budget(limits, bound)
        # As an unprivileged uid the count starts near zero; as this user it includes everything the user already runs.
        nproc = procs if os.geteuid() == 0 else _user_processes() + procs
        tic = time.perf_counter()
        timed_out = False
        try:
            with open(stage.root / "out", "w+b") as out, open(stage.root / "err", "w+b") as err:
                os.chmod(stage.root / "out", 0o600)
                proc = subprocess.Popen(
                    full, cwd=cwd, env=run_env, stdin=stdin_fd, stdout=out, stderr=err, start_new_session=True,
                    preexec_fn=_preexec(limits, nproc, drop, memory,
                                        group.procs_file if group else None),
                    close_fds=True, pass_fds=tuple(stage.fds),
                )
                try:
                    proc.wait(timeout=limits.wall_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                finally:
                    # Always take the whole group down: a finished parent may have left children behind.
                    _kill_group(proc)
                    proc.wait()
                rc = proc.returncode
                # RLIMIT_CPU ends a spinning program with SIGXCPU, often a moment before the wall clock would: that
                # is a timeout too (bwrap and sh report a child's death by signal N as exit status 128 + N).
                timed_out = timed_out or rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU)
                oom = bool(group and group.oom_kills())
                return SandboxResult(
                    returncode=None if timed_out else rc,
                    stdout=_read_head(out, output_limit),
                    stderr=_read_head(err, output_limit),
                    timed_out=timed_out,
                    wall_s=time.perf_counter() - tic,
                    isolation=level,
                    signal=-rc if rc is not None and rc < 0 else None,
                    notes=[f"memory cgroup killed a process: the tree reached {limits.total_memory_bytes} bytes"] if oom else [],
                    memory_bound=bound,
                    oom_killed=oom,
                    memory_peak=group.peak() if group else None,
                    output_limited=max(os.fstat(out.fileno()).st_size, os.fstat(err.fileno()).st_size) >= limits.file_bytes,
                )
        finally:
            if group is not None:
                group.close()


def run_python(code: str, *, limits: Limits | None = None, stdin: str | None = None, python: str | None = None,
               level: str | None = None, allow_weak: bool = False) -> SandboxResult:
    """Run `code` (passed in as {in}/main.py) with the harness's Python in isolated mode (-I -S)."""
    return run_sandboxed([python or sys.executable, "-I", "-S", "{in}/main.py"], limits=limits, stdin=stdin,
                         inputs={"main.py": code.encode()}, level=level, allow_weak=allow_weak)
