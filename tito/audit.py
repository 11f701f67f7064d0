"""The audit hook of a grading process, and the ``Policy`` it enforces.

``make_audit_hook`` builds the hook the grading child installs (``sys.addaudithook``: it cannot
be removed) before any cell runs (tito/sandbox.py). It refuses: importing or reading the
reference solution (by inode, so symlinks and copies by path do not help), writes outside the
work directory, new processes, ctypes, heap walking (gc), tracers/profilers, new audit hooks,
building code or function objects, swapping a library function's ``__code__`` or defaults,
changing a library module's or class's identity, signals to other processes, sockets and raising
resource limits. Each refusal is logged as (event, what, "student" or "course").

Only the standard library is used here.
"""

from __future__ import annotations

import os
import stat
import sys
import types
from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    module_id: str
    blocked_modules: tuple[str, ...]  # "tinytorch.toy": importing it is refused
    deny_read: frozenset[tuple[int, int]]  # (st_dev, st_ino) of files nobody may open
    deny_dirs: frozenset[tuple[int, int]]  # directories that may not be opened as fds
    memory_mb: int  # address space the process may add to what it starts with
    cell_timeout: float
    file_size_mb: int = 256
    cpu_seconds: int = 0  # RLIMIT_CPU of the grading process (0: none)
    processes: int = 0  # RLIMIT_NPROC (0: none); the OS boundary sets it
    open_files: int = 0  # RLIMIT_NOFILE (0: none)
    # allow-list of write roots is the work directory (set per child)


# ---- the audit hook ----------------------------------------------------------------------------
_VETO = {
    "gc.get_objects": "walking the heap (gc.get_objects)",
    "gc.get_referrers": "walking the heap (gc.get_referrers)",
    "gc.get_referents": "walking the heap (gc.get_referents)",
    "sys.settrace": "installing a tracer (sys.settrace)",
    "sys.setprofile": "installing a profiler (sys.setprofile)",
    "sys.addaudithook": "installing an audit hook",
    "sys._current_frames": "reading other threads' frames",
    "sys._current_exceptions": "reading other threads' exceptions",
    "code.__new__": "building a code object",
    "function.__new__": "building a function object from a code object",
    "subprocess.Popen": "starting a process (subprocess)",
    "os.system": "starting a process (os.system)",
    "os.exec": "replacing the process (os.exec*)",
    "os.posix_spawn": "starting a process (os.posix_spawn)",
    "os.spawn": "starting a process (os.spawn*)",
    "os.fork": "forking",
    "os.forkpty": "forking",
    "pty.spawn": "starting a process (pty.spawn)",
    "os.kill": "sending a signal",
    "os.killpg": "sending a signal",
    "signal.pthread_kill": "sending a signal",
    "os.link": "making a hard link",
    "socket.connect": "opening a network connection",
    "socket.bind": "opening a network socket",
    "socket.sendto": "sending network data",
    "socket.sendmsg": "sending network data",
    "resource.setrlimit": "changing resource limits",
    "resource.prlimit": "changing resource limits",
    "os.setuid": "changing user",
    "os.chroot": "changing root",
    "webbrowser.open": "opening a browser",
}
_QUIET = frozenset(
    {
        "object.__getattr__",
        "marshal.loads",
        "exec",
        "compile",
        "sys._getframe",
        "sys._getframemodulename",
        "os.listdir",
        "os.scandir",
        "builtins.id",
        "os.putenv",
        "os.unsetenv",
        "os.chdir",
        "glob.glob",
        "glob.glob/2",
        "tempfile.mkstemp",
        "tempfile.mkdtemp",
        "time.sleep",
        "sys.excepthook",
        "cpython.run_command",
        "os.walk",
        "os.fwalk",
    }
)
# events that write or remove at a path: (positions of path args, positions of dir_fd args)
_PATH_WRITES = {
    "os.remove": ((0,), (1,)),
    "os.rmdir": ((0,), (1,)),
    "os.rename": ((0, 1), (2, 3)),
    "os.truncate": ((0,), ()),
    "os.chmod": ((0,), (2,)),
    "os.chown": ((0,), (3,)),
    "os.utime": ((0,), (3,)),
    "os.mkdir": ((0,), (2,)),
    "os.symlink": ((1,), (2,)),
    "os.mkfifo": ((0,), (2,)),
    "os.mknod": ((0,), (3,)),
    "os.chflags": ((0,), ()),
    "os.lchflags": ((0,), ()),
    "os.setxattr": ((0,), ()),
    "os.removexattr": ((0,), ()),
    "shutil.rmtree": ((0,), (1,)),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def make_audit_hook(
    policy: Policy,
    events: list,
    ns_id: int,
    write_roots: frozenset[tuple[int, int]],
    lib_module_ids: frozenset[int],
    lib_class_ids: frozenset[int],
    trusted_files: frozenset[str] = frozenset(),
    student_files: frozenset[str] = frozenset(),
):
    """The hook the child installs. Everything it decides on is immutable (frozensets, tuples,
    C functions bound as defaults, helpers without closures); the only mutable thing it holds is
    ``events``, a log of (event, what was refused, "student" or "course")."""

    root_key = (os.stat("/").st_dev, os.stat("/").st_ino)
    null = os.stat(os.devnull)
    devnull_key = (null.st_dev, null.st_ino)
    pyc_names = tuple(b.rsplit(".", 1)[-1] + "." for b in policy.blocked_modules)

    def under_roots(path, _stat=os.stat, _roots=write_roots, _root=root_key, _OSError=OSError):
        """Whether directory ``path`` lies under a write root (walking '..', which the kernel
        resolves physically); a directory that does not exist counts as inside (the operation
        fails by itself)."""
        cur = path or "."
        for _ in range(64):
            try:
                st = _stat(cur)
            except _OSError:
                return True
            key = (st.st_dev, st.st_ino)
            if key in _roots:
                return True
            if key == _root:
                return False
            cur = cur + "/.."
        return False

    def parent_of(path):
        stripped = path.rstrip("/") or "/"
        head, sep, _ = stripped.rpartition("/")
        return (head or "/") if sep else "."

    def who(_getframe=sys._getframe, _files=student_files):
        """'student' when code compiled from a student cell is on the call stack."""
        frame = _getframe(2)
        while frame is not None:
            if frame.f_code.co_filename in _files:
                return "student"
            frame = frame.f_back
        return "course"

    def refuse(event, what, exc, _events=events, _who=who):
        _events.append((event, what, _who()))
        raise exc

    def hook(
        event,
        args,
        _quiet=_QUIET,
        _veto=_VETO,
        _writes=_PATH_WRITES,
        _refuse=refuse,
        _under=under_roots,
        _parent=parent_of,
        _blocked=policy.blocked_modules,
        _module_id=policy.module_id,
        _deny=policy.deny_read,
        _deny_dirs=policy.deny_dirs,
        _devnull=devnull_key,
        _pyc_names=pyc_names,
        _stat=os.stat,
        _lstat=os.lstat,
        _readlink=os.readlink,
        _isinstance=isinstance,
        _type=type,
        _id=id,
        _str=str,
        _bytes=bytes,
        _int=int,
        _ftype=types.FunctionType,
        _ns_id=ns_id,
        _trusted_files=trusted_files,
        _mods=lib_module_ids,
        _classes=lib_class_ids,
        _wflags=_WRITE_FLAGS,
        _S_ISDIR=stat.S_ISDIR,
        _S_ISLNK=stat.S_ISLNK,
        _PermissionError=PermissionError,
        _ImportError=ImportError,
        _OSError=OSError,
    ):
        if event in _quiet:
            return
        if event == "open":
            path, mode, flags = args
            if _isinstance(path, _int):
                return
            if _isinstance(path, _bytes):
                path = path.decode("utf-8", "surrogateescape")
            if not _isinstance(path, _str):
                return
            writing = (
                _isinstance(mode, _str)
                and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)
            ) or (_isinstance(flags, _int) and flags & _wflags)
            try:
                st = _stat(path)
            except _OSError:
                st = None
            if st is not None:
                key = (st.st_dev, st.st_ino)
                denied = key in _deny or (_S_ISDIR(st.st_mode) and key in _deny_dirs)
                if not denied and path.endswith(".pyc"):
                    # compiled reference written after the policy was made: by name, in the
                    # __pycache__ of a denied (package) directory
                    head, _, base = path.rpartition("/")
                    if head.endswith("__pycache__") and base.startswith(_pyc_names):
                        try:
                            up = _stat((head or ".") + "/..")
                            denied = (up.st_dev, up.st_ino) in _deny_dirs
                        except _OSError:
                            pass
                if denied:
                    what = f"reading {path}"
                    _refuse(
                        event,
                        what,
                        _PermissionError(f"tito: {what} is not allowed while grading {_module_id}"),
                    )
                if _S_ISDIR(st.st_mode) and not _under(path):
                    # a directory descriptor would let later fd-relative calls escape the checks
                    what = f"opening the directory {path} as a descriptor"
                    _refuse(event, what, _PermissionError(f"tito: {what} is not allowed"))
                if key == _devnull:
                    return
            if not writing:
                return
            checks = [path]
        elif event == "import" or event == "tito.import":
            name = args[0]
            if _isinstance(name, _str):
                for b in _blocked:
                    if name == b or name.startswith(b + "."):
                        _refuse(
                            "import",
                            f"importing {name} (the reference solution)",
                            _ImportError(
                                f"tito: importing {name} is not allowed while grading: it is "
                                f"the reference solution of {_module_id}"
                            ),
                        )
            return
        elif event in _veto:
            _refuse(
                event,
                _veto[event],
                _PermissionError(f"tito: {_veto[event]} is not allowed while grading"),
            )
        elif event.startswith("ctypes."):
            _refuse(
                event,
                "loading or calling native code (ctypes)",
                _PermissionError("tito: ctypes is not allowed while grading"),
            )
        elif event == "object.__setattr__" or event == "object.__delattr__":
            obj, name = args[0], args[1]
            if _type(obj) is _ftype:
                if name in ("__code__", "__defaults__", "__kwdefaults__") and (
                    _id(obj.__globals__) != _ns_id or obj.__code__.co_filename in _trusted_files
                ):
                    what = f"changing {name} of the function {obj.__qualname__}"
                    _refuse(
                        event,
                        what,
                        _PermissionError(
                            f"tito: {what} (library or given code) is not allowed while grading"
                        ),
                    )
                return
            if _id(obj) in _classes or _id(obj) in _mods:
                what = f"changing {name} of {getattr(obj, '__name__', '?')}"
                _refuse(event, what, _PermissionError(f"tito: {what} (a library object)"))
            return
        elif event in _writes:
            paths, fds = _writes[event]
            bases = {}
            for i in fds:
                if i < len(args) and _isinstance(args[i], _int) and args[i] >= 0:
                    try:  # fd-relative: resolve the directory the descriptor names
                        bases[i] = _readlink(f"/proc/self/fd/{args[i]}")
                    except _OSError:
                        what = f"{event} relative to an unknown directory descriptor"
                        _refuse(event, what, _PermissionError(f"tito: {what} is not allowed"))
            checks = []
            for k, i in enumerate(paths):
                if i < len(args):
                    p = args[i]
                    if _isinstance(p, _bytes):
                        p = p.decode("utf-8", "surrogateescape")
                    if _isinstance(p, _str):
                        base = bases.get(fds[k] if k < len(fds) else -1)
                        if base is not None and not p.startswith("/"):
                            p = base + "/" + p
                        checks.append(p)
        else:
            return
        # a write: never through a link, and only under the work directory
        for p in checks:
            try:
                lst = _lstat(p)
                if _S_ISLNK(lst.st_mode) or (lst.st_nlink > 1 and not _S_ISDIR(lst.st_mode)):
                    what = f"writing through the link {p}"
                    _refuse(event, what, _PermissionError(f"tito: {what} is not allowed"))
            except _OSError:
                pass
            if not _under(_parent(p)):
                what = f"writing {p}"
                _refuse(
                    event,
                    what,
                    _PermissionError(
                        f"tito: {what} is not allowed while grading (only the work directory)"
                    ),
                )

    return hook
