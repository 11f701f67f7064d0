"""The grading process: a fresh fork per notebook that runs student and trusted cells under guard.

A ``Template`` is prepared once (imports what the trusted cells import, then snapshots the
library state) -- behind the OS boundary by the sandboxed zygote of tito/boundary.py, or with
--no-sandbox in the worker itself (tito/workers.py) -- and one child is forked per notebook.
The child never returns: ``child_main`` installs the limits and the guard, then runs the cells
the worker asks for, one by one, answering each request (which carries a fresh nonce) with that
cell's outputs.

What the guard does (the why is in docs/grading.md):

- an audit hook (``sys.addaudithook``, irremovable) refuses: importing or reading the reference
  solution (by inode, so symlinks and copies by path do not help), writes outside the work
  directory, new processes and threads, ctypes, heap walking (gc), tracers/profilers, new audit
  hooks, building code or function objects, swapping a library function's ``__code__`` or
  defaults, changing a library module's or class's identity, signals to other processes,
  sockets and raising resource limits;
- after every cell, library state is compared with the snapshot (module attributes that are
  callables or modules, attributes of library classes, ``sys.modules``, ``sys.meta_path`` ...)
  and restored; a change made while a grade cell ran voids that cell;
- names the checks rely on (bound by trusted cells, by no solution cell) are restored in the
  notebook namespace before trusted code runs again.

Only the standard library is used here.
"""

from __future__ import annotations

import ast
import builtins
import gc
import json
import linecache
import os
import resource
import signal
import stat
import struct
import sys
import time
import traceback
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_MESSAGE = 64 << 20  # bytes; a bigger length prefix is a protocol violation
OUTPUT_LIMIT = 256 * 1024  # characters of captured output per cell
_HEADER = struct.Struct("!I")
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE
_IMMUTABLETYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE (3.10+)
_MISSING = object()


class CellTimeout(BaseException):
    """Raised inside a cell that outlived its time limit (BaseException: ``except Exception``
    in student code does not swallow it)."""


class ProtocolError(Exception):
    pass


# ---- framing (both sides) ---------------------------------------------------------------------
def send_msg(fd: int, obj, _write=os.write, _dumps=json.dumps) -> None:
    data = _dumps(obj, ensure_ascii=True).encode("ascii")
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        n = _write(fd, view)
        view = view[n:]


def recv_msg(fd: int, deadline: float | None = None):
    """One message, or raise TimeoutError (deadline passed), EOFError (peer gone),
    ProtocolError (garbage)."""
    header = _read_exact(fd, _HEADER.size, deadline)
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE:
        raise ProtocolError(f"message of {size} bytes")
    try:
        return json.loads(_read_exact(fd, size, deadline).decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"undecodable message: {exc}") from None


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    import select

    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# ---- what the worker hands the child ---------------------------------------------------------
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


@dataclass(frozen=True)
class CellSpec:
    index: int
    label: str  # grade_id or cell id: names the cell in notes and tracebacks
    source: str
    student: bool
    grade: bool
    binds: frozenset[str]


class Template:
    """A worker's pristine state: trusted imports done, library state snapshotted. Forked
    children start from exactly this state (copy-on-write), so no student leaves anything
    behind for the next one."""

    def __init__(self, preload: Iterable[str], blocked: Sequence[str], package_dir: str | None):
        self.preload_errors: dict[str, str] = {}
        os.environ.setdefault("MPLBACKEND", "Agg")
        for name in sorted(set(preload)):
            if any(name == b or name.startswith(b + ".") for b in blocked):
                continue
            try:
                __import__(name)
            except Exception as exc:  # a from-import of a name that is not a module, ...
                self.preload_errors[name] = f"{type(exc).__name__}: {exc}"
        if package_dir:
            self._extend_package(package_dir)
        # importlib.import_module raises no "import" audit event for the module itself: a
        # finder in front of all others reports every attempt to the hook (which refuses it)
        sys.meta_path.insert(0, ReferenceBlocker(tuple(blocked)))
        self._quiet_pyplot()
        self._quiet_tqdm()
        for b in blocked:
            if b in sys.modules:
                raise RuntimeError(f"the reference solution {b} was imported while preloading")
        gc.collect()
        self.guard = Guard(exclude=("__main__", "__mp_main__"))

    @staticmethod
    def _extend_package(package_dir: str) -> None:
        """Make ``<package>.<module>`` resolve in the project's package dir (tests use a
        temporary project whose package dir is not the installed one)."""
        pkg = sys.modules.get("tinytorch")
        if pkg is None:
            try:
                import tinytorch as pkg  # noqa: F401
            except Exception:
                return
        path = getattr(pkg, "__path__", None)
        if path is not None and os.path.realpath(package_dir) not in map(os.path.realpath, path):
            path.append(package_dir)

    @staticmethod
    def _quiet_tqdm() -> None:
        """tqdm starts a monitor thread (stalled-bar detection) with its first bar; grading
        refuses threads, so switch the monitor off beforehand (tinytorch's fit uses tqdm)."""
        try:
            import tqdm
        except ImportError:
            return
        tqdm.tqdm.monitor_interval = 0

    @staticmethod
    def _quiet_pyplot() -> None:
        """With the Agg backend ``plt.show()`` warns on stderr (which zeroes a grade cell under
        nbgrader's rules); under a notebook it displays. Here it does nothing, and the backend is
        chosen now so that choosing it later does not look like a library being rebound."""
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        try:
            plt.switch_backend("Agg")
        except Exception:
            pass
        plt.show = lambda *args, **kwargs: None


class ReferenceBlocker:
    """A ``sys.meta_path`` finder that refuses the reference solution by name (any import
    route: statements, ``__import__``, ``importlib.import_module``)."""

    def __init__(self, blocked: tuple[str, ...]):
        self.blocked = blocked

    def find_spec(self, name, path=None, target=None):
        for b in self.blocked:
            if name == b or name.startswith(b + "."):
                sys.audit("tito.import", name)  # the child's hook records and refuses it
                raise ImportError(f"tito: importing {name} is not allowed while grading")
        return None


# ---- the guard ---------------------------------------------------------------------------------
def _is_api(value) -> bool:
    return callable(value) or isinstance(value, types.ModuleType)


def _is_attr_api(value) -> bool:
    return callable(value) or hasattr(type(value), "__get__")


class Guard:
    """Snapshot of the library state trusted code depends on; ``check`` finds and undoes changes.

    Only *API* bindings are compared (module attributes holding callables or modules, class
    attributes holding callables or descriptors): libraries rebind their data (caches,
    counters) at run time, never their functions.
    """

    def __init__(self, exclude: Sequence[str] = ()):
        self.mod_entries = []  # (name, module, dict, keys, values, ids)
        self.cls_entries = []  # (qualified name, class, keys, values, ids, n_keys list)
        seen_cls = set()
        for name, mod in list(sys.modules.items()):
            if name in exclude or not isinstance(mod, types.ModuleType):
                continue
            d = mod.__dict__
            api = {k: v for k, v in list(d.items()) if _is_api(v)}
            keys = list(api)
            values = list(api.values())
            self.mod_entries.append((name, mod, d, keys, values, [id(v) for v in values]))
            for v in values:
                if (
                    isinstance(v, type)
                    and id(v) not in seen_cls
                    and v.__flags__ & _HEAPTYPE
                    and not v.__flags__ & _IMMUTABLETYPE
                ):
                    seen_cls.add(id(v))
                    attrs = {k: a for k, a in list(vars(v).items()) if _is_attr_api(a)}
                    ckeys = list(attrs)
                    cvals = list(attrs.values())
                    qual = f"{getattr(v, '__module__', '?')}.{getattr(v, '__qualname__', '?')}"
                    self.cls_entries.append(
                        (qual, v, ckeys, cvals, [id(a) for a in cvals], [len(vars(v))])
                    )
        self.mod_names = [e[0] for e in self.mod_entries]
        self.mod_objs = [e[1] for e in self.mod_entries]
        self.mod_ids = [id(m) for m in self.mod_objs]
        self.mod_types = [type(m) for m in self.mod_objs]
        self.lib_module_ids = frozenset(self.mod_ids)
        self.lib_class_ids = frozenset(id(e[1]) for e in self.cls_entries)
        self.lists = {
            "sys.meta_path": (sys.meta_path, list(sys.meta_path)),
            "sys.path_hooks": (sys.path_hooks, list(sys.path_hooks)),
            "gc.callbacks": (gc.callbacks, list(gc.callbacks)),
        }
        self._flatten()
        self.importer_cache = dict(sys.path_importer_cache)
        self.path = list(sys.path)
        self.recursion_limit = sys.getrecursionlimit()
        self.graveyard: list = []  # values removed by a restore (never freed: no __del__ runs)

    def _flatten(self) -> None:
        """One flat list per kind, so the common case (nothing changed) is a few C-level maps."""
        self._m_dicts = [d for _n, _m, d, keys, _v, _i in self.mod_entries for _ in keys]
        self._m_keys = [k for e in self.mod_entries for k in e[3]]
        self._m_ids = [i for e in self.mod_entries for i in e[5]]
        self._proxies = [vars(e[1]) for e in self.cls_entries]
        self._c_maps = [self._proxies[j] for j, e in enumerate(self.cls_entries) for _ in e[2]]
        self._c_keys = [k for e in self.cls_entries for k in e[2]]
        self._c_ids = [i for e in self.cls_entries for i in e[4]]
        self._c_lens = list(map(len, self._proxies))

    def clean(self) -> bool:
        """True when no module or class binding changed (the fast path of ``check``)."""
        return (
            list(map(id, map(dict.get, self._m_dicts, self._m_keys))) == self._m_ids
            and list(map(id, map(types.MappingProxyType.get, self._c_maps, self._c_keys)))
            == self._c_ids
            and list(map(len, self._proxies)) == self._c_lens
        )

    def accept(self, modules) -> None:
        """Take the current API bindings of ``modules`` as the state to keep."""
        for entry in self.mod_entries:
            _name, mod, d, keys, values, ids = entry
            if any(mod is m for m in modules):
                values[:] = [d.get(k) for k in keys]
                ids[:] = [id(v) for v in values]
        self._flatten()

    def check(self) -> list[str]:
        """Undo every change to the snapshot; describe the ones that look like tampering."""
        changes: list[str] = []
        keep = self.graveyard.append
        if not self.clean():
            self._restore_bindings(changes, keep)
        self._restore_sys(changes, keep)
        return changes

    def _restore_bindings(self, changes: list[str], keep) -> None:
        for name, _mod, d, keys, values, ids in self.mod_entries:
            if list(map(id, map(d.get, keys))) == ids:
                continue
            for k, v in zip(keys, values):
                cur = d.get(k, _MISSING)
                if cur is not v:
                    changes.append(f"{'deleted' if cur is _MISSING else 'rebound'} {name}.{k}")
                    keep(cur)
                    d[k] = v
        for qual, cls, keys, values, ids, n_keys in self.cls_entries:
            attrs = vars(cls)
            same = list(map(id, map(attrs.get, keys))) == ids
            if same and len(attrs) == n_keys[0]:
                continue
            if not same:
                for k, v in zip(keys, values):
                    cur = attrs.get(k, _MISSING)
                    if cur is not v:
                        changes.append(f"{'deleted' if cur is _MISSING else 'changed'} {qual}.{k}")
                        keep(cur)
                        try:
                            type.__setattr__(cls, k, v)
                        except (TypeError, AttributeError):
                            pass
            known = set(keys)
            for k, v in list(attrs.items()):
                if k not in known and _is_attr_api(v) and not k.startswith("_abc_"):
                    changes.append(f"added {qual}.{k}")
                    keep(v)
                    try:
                        type.__delattr__(cls, k)
                    except (TypeError, AttributeError):
                        pass
            n_keys[0] = len(vars(cls))
        self._c_lens = list(map(len, self._proxies))

    def _restore_sys(self, changes: list[str], keep) -> None:
        current = list(map(sys.modules.get, self.mod_names))
        if list(map(id, current)) != self.mod_ids:
            for name, mod, cur in zip(self.mod_names, self.mod_objs, current):
                if cur is not mod:
                    changes.append(f"replaced sys.modules[{name!r}]")
                    keep(cur)
                    sys.modules[name] = mod
        if list(map(type, self.mod_objs)) != self.mod_types:
            changes.append("changed the class of a library module")  # the audit hook forbids it
        for label, (obj, saved) in self.lists.items():
            holder_name, attr = label.split(".")
            holder = sys if holder_name == "sys" else gc
            if getattr(holder, attr) is not obj:
                changes.append(f"replaced {label}")
                setattr(holder, attr, obj)
            if list(map(id, obj)) != list(map(id, saved)):
                changes.append(f"changed {label}")
                keep(list(obj))
                obj[:] = saved
        for path, finder in self.importer_cache.items():
            if sys.path_importer_cache.get(path, finder) is not finder:
                changes.append("changed sys.path_importer_cache")
                sys.path_importer_cache[path] = finder
        if sys.path != self.path:
            sys.path[:] = self.path  # not reported: harmless, but checks import from here
        if sys.getrecursionlimit() != self.recursion_limit:
            sys.setrecursionlimit(self.recursion_limit)


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


# ---- the child --------------------------------------------------------------------------------
class _Capture:
    """sys.stdout / sys.stderr of a cell: text into the cell's outputs."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, name: str, outputs: list, budget: list):
        self.name = name
        self._outputs = outputs
        self._budget = budget

    def write(self, text) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        n = len(text)
        if self._budget[0] <= 0:
            return n
        if n > self._budget[0]:
            text = text[: self._budget[0]] + "\n[output truncated by tito]\n"
        self._budget[0] -= n
        outs = self._outputs
        if outs and outs[-1].get("output_type") == "stream" and outs[-1]["name"] == self.name:
            outs[-1]["text"] += text
        else:
            outs.append({"output_type": "stream", "name": self.name, "text": text})
        return n

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("captured stream has no file descriptor")


def _safe_repr(value, limit: int = 20000) -> str:
    try:
        text = repr(value)
    except BaseException as exc:  # a student __repr__ that raises
        text = f"<repr failed: {type(exc).__name__}>"
    if not isinstance(text, str):
        text = "<repr returned a non-string>"
    return text if len(text) <= limit else text[:limit] + "..."


def child_main(
    cmd_fd: int,
    reply_fd: int,
    cells: Sequence[CellSpec],
    policy: Policy,
    template: Template,
    work_dir: str,
    protected: frozenset[str],
) -> None:
    """Entry point of the forked child. Never returns (the worker kills it when done)."""
    try:
        _child(cmd_fd, reply_fd, cells, policy, template, work_dir, protected)
    except BaseException as exc:  # setup failed: say so once, then die
        try:
            send_msg(reply_fd, {"op": "fatal", "error": f"{type(exc).__name__}: {exc}"})
        except BaseException:
            pass
    os._exit(70)


def _child(cmd_fd, reply_fd, cells, policy, template, work_dir, protected):
    # --- file descriptors: only our two pipes survive; stdio go to /dev/null
    cmd_fd, reply_fd = os.dup2(cmd_fd, 200), os.dup2(reply_fd, 201)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, 200)
    os.closerange(202, 65536)
    # --- limits
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as f:
        vm_now = int(f.read().split()[0]) * page
    limit = vm_now + policy.memory_mb * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    fsize = policy.file_size_mb * (1 << 20)
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    for kind, value in (
        (resource.RLIMIT_CPU, policy.cpu_seconds),
        (resource.RLIMIT_NPROC, policy.processes),
        (resource.RLIMIT_NOFILE, policy.open_files),
    ):
        if value:
            resource.setrlimit(kind, (int(value), int(value)))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # --- work directory and temp files
    os.chdir(work_dir)
    tmp = os.path.join(work_dir, ".tmp")
    os.makedirs(tmp, exist_ok=True)
    os.environ["TMPDIR"] = tmp
    import tempfile

    tempfile.tempdir = tmp
    if work_dir not in sys.path:
        sys.path.insert(0, work_dir)
    sys.dont_write_bytecode = True
    events: list = []  # (audit event, what was refused): drained after every cell
    # --- the notebook namespace, as __main__
    main = types.ModuleType("__main__")
    ns = main.__dict__
    ns["__builtins__"] = builtins
    outputs_box: list = [[]]

    def display(*objs, **_kw):
        for obj in objs:
            outputs_box[0].append(
                {
                    "output_type": "display_data",
                    "data": {"text/plain": _safe_repr(obj)},
                    "metadata": {},
                }
            )

    ns["display"] = display
    sys.modules["__main__"] = main
    # --- threads: refused (no audit event covers them in 3.11)
    import _thread
    import threading

    student_files = frozenset(f"<cell {c.label}>" for c in cells if c.student)

    def no_threads(*_a, **_k):
        frame, who = sys._getframe(1), "course"
        while frame is not None:
            if frame.f_code.co_filename in student_files:
                who = "student"
                break
            frame = frame.f_back
        events.append(("thread", "starting a thread", who))
        raise RuntimeError("tito: starting threads is not allowed while grading")

    for holder, attr in (
        (_thread, "start_new_thread"),
        (_thread, "start_new"),
        (threading, "_start_new_thread"),
    ):
        if hasattr(holder, attr):
            setattr(holder, attr, no_threads)
    guard = template.guard
    guard.accept((_thread, threading))  # the blockers are the state to keep from here on
    guard.path = list(sys.path)
    # --- the audit hook: from here on, the policy holds
    st = os.stat(work_dir)
    write_roots = frozenset({(st.st_dev, st.st_ino)})
    sys.addaudithook(
        make_audit_hook(
            policy,
            events,
            id(ns),
            write_roots,
            guard.lib_module_ids,
            guard.lib_class_ids,
            frozenset(f"<cell {c.label}>" for c in cells if not c.student),
            frozenset(f"<cell {c.label}>" for c in cells if c.student),
        )
    )
    plt = sys.modules.get("matplotlib.pyplot")
    close_figures = getattr(plt, "close", None)
    # captured references: later cells cannot swap what the runner uses
    _recv, _send, _monotonic = recv_msg, send_msg, time.monotonic
    _setitimer, _signal = signal.setitimer, signal.signal
    _format_exception = traceback.format_exception
    _check = guard.check
    trusted_vals: dict = {}
    timeout = float(policy.cell_timeout)

    def on_alarm(_signum, _frame):
        raise CellTimeout(f"the cell did not finish within {timeout:g} s")

    # the probe half of judged grade cells (tito/probe.py): armed with the worker's inputs
    # before the cell, its outputs collected after it (what they are decides nothing here)
    probe_mod = sys.modules.get("tito.probe")
    _arm = getattr(probe_mod, "_arm", None)
    _collect = getattr(probe_mod, "_collect", None)
    _send(reply_fd, {"op": "ready"})
    while True:
        msg = _recv(cmd_fd)
        op = msg.get("op") if isinstance(msg, dict) else None
        if op == "arm":  # before a judged grade cell: its probe's inputs (not timed)
            if _arm is not None:
                _arm(msg["module"], msg["check"], msg["payload"])
            _send(reply_fd, {"op": "armed", "nonce": msg["nonce"]})
            continue
        if op == "collect":  # after it: what its probe recorded (not timed)
            try:
                payload = _collect() if _collect is not None else None
            except BaseException as exc:  # noqa: B036 -- whatever broke, the judge says why
                payload = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            _send(reply_fd, {"op": "probe", "nonce": msg["nonce"], "probe": payload})
            continue
        if op != "run":
            os._exit(0)
        spec = cells[int(msg["i"])]
        result = _run_cell(
            spec,
            ns,
            outputs_box,
            events,
            timeout,
            on_alarm,
            _setitimer,
            _signal,
            _format_exception,
            _check,
            protected,
            trusted_vals,
            close_figures,
            _monotonic,
        )
        result.update(op="result", i=spec.index, nonce=msg["nonce"])
        _send(reply_fd, result)


def _run_cell(
    spec,
    ns,
    outputs_box,
    events,
    timeout,
    on_alarm,
    _setitimer,
    _signal,
    _format_exception,
    _check,
    protected,
    trusted_vals,
    close_figures,
    _monotonic,
):
    outputs: list = []
    outputs_box[0] = outputs
    budget = [OUTPUT_LIMIT]
    out, err = _Capture("stdout", outputs, budget), _Capture("stderr", outputs, budget)
    filename = f"<cell {spec.label}>"
    linecache.cache[filename] = (len(spec.source), None, spec.source.splitlines(True), filename)
    notes: list[str] = []
    _restore_names(spec, ns, protected, trusted_vals, notes, before=True)
    del events[:]
    status, error, timed_out = "ok", None, False
    start = _monotonic()
    exc_info = None
    try:
        sys.stdout, sys.stderr = out, err
        _signal(signal.SIGALRM, on_alarm)
        _setitimer(signal.ITIMER_REAL, timeout, 1.0)
        try:
            value = _execute(spec.source, filename, ns)
        finally:
            _setitimer(signal.ITIMER_REAL, 0)
        if value is not None:
            outputs.append(
                {
                    "output_type": "execute_result",
                    "execution_count": spec.index + 1,
                    "data": {"text/plain": _safe_repr(value)},
                    "metadata": {},
                }
            )
            # partial credit (nbgrader's rule) only from a plain number, never a student object
            if type(value) in (int, float) or type(value).__module__ == "numpy":
                try:
                    outputs[-1]["partial"] = float(value)
                except BaseException:
                    pass
    except BaseException as exc:  # noqa: B036 -- the cell failed, whatever it raised
        _setitimer(signal.ITIMER_REAL, 0)
        status = "error"
        timed_out = isinstance(exc, CellTimeout)
        exc_info = exc
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    seconds = _monotonic() - start
    # library state first (so formatting below runs on pristine libraries), then the names
    tamper = _check()
    if exc_info is not None:  # formatting may run student code (__str__): check again after
        error = _describe_error(exc_info, _format_exception, outputs)
        exc_info = None
        tamper += _check()
    _restore_names(spec, ns, protected, trusted_vals, notes, before=False)
    if close_figures is not None:
        try:
            close_figures("all")
        except BaseException:
            pass
    # refusals while a trusted cell ran count against the student only if student code was on
    # the stack; the others are the course's own cells doing something grading forbids
    blocked = [what for _e, what, who in events if spec.student or who == "student"]
    course = [what for _e, what, who in events if not spec.student and who != "student"]
    del events[:]
    return {
        "status": status,
        "error": error,
        "timed_out": timed_out,
        "seconds": round(seconds, 4),
        "outputs": outputs,
        "tamper": tamper,
        "names": notes,
        "blocked": blocked,
        "course": course,
    }


def _execute(source: str, filename: str, ns: dict):
    """Run a cell like IPython: the value of a final expression statement is returned."""
    tree = ast.parse(source, filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not source.rstrip().endswith(";"):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, filename, "exec"), ns)
    if last is not None:
        return eval(compile(last, filename, "eval"), ns)
    return None


def _describe_error(exc, _format_exception, outputs) -> str:
    """Append an nbformat error output for ``exc``; return 'Type: message' (one line)."""
    ename = type(exc).__name__
    try:
        evalue = str(exc)
    except BaseException:
        evalue = "<str() of the exception failed>"
    if not isinstance(evalue, str):
        evalue = "<str() returned a non-string>"
    try:
        tb = exc.__traceback__
        # drop the runner's own frames (_execute): start at the cell's code
        while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell "):
            tb = tb.tb_next
        lines = _format_exception(type(exc), exc, tb)
        text = "".join(lines)
        if len(text) > 20000:
            text = text[:10000] + "\n...\n" + text[-10000:]
        trace = text.rstrip("\n").split("\n")
    except BaseException:
        trace = [f"{ename}: {evalue}"]
    outputs.append({"output_type": "error", "ename": ename, "evalue": evalue, "traceback": trace})
    first = evalue.strip().splitlines()[0] if evalue.strip() else ""
    return f"{ename}: {first}"[:300] if first else ename


def _restore_names(spec, ns, protected, trusted_vals, notes, *, before: bool) -> None:
    """Names the checks use keep the value trusted code gave them, and those values keep their
    insides (a function's closure cells, a class's methods)."""
    if ns.get("__builtins__") is not builtins:
        notes.append("replaced __builtins__")
        ns["__builtins__"] = builtins
    if not before and not spec.student:
        # this trusted cell's own bindings become the trusted values
        for name in spec.binds & protected:
            value = ns.get(name, _MISSING)
            if value is _MISSING:
                trusted_vals.pop(name, None)
            else:
                trusted_vals[name] = (value, _deep_snapshot(value))
    for name, (value, snap) in trusted_vals.items():
        if not before and not spec.student and name in spec.binds:
            continue
        if ns.get(name, _MISSING) is not value:
            if callable(value) or isinstance(value, types.ModuleType):
                notes.append(f"rebound {name}, which the checks use")
            ns[name] = value
        changed = _deep_restore(value, snap)
        if changed:
            notes.append(f"changed {changed} of {name}, which the checks use")


def _deep_snapshot(value):
    if isinstance(value, types.FunctionType):
        cells = value.__closure__ or ()
        return ("f", [(c, c.cell_contents if _filled(c) else _MISSING) for c in cells])
    if isinstance(value, type) and value.__flags__ & _HEAPTYPE:
        return ("c", {k: a for k, a in list(vars(value).items()) if _is_attr_api(a)})
    return None


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 -- raises ValueError when the cell is empty
    except ValueError:
        return False
    return True


def _deep_restore(value, snap) -> str | None:
    """Undo changes inside a protected function or class; name what changed (or None)."""
    if snap is None:
        return None
    kind, saved = snap
    changed = None
    if kind == "f":
        for cell, contents in saved:
            now = cell.cell_contents if _filled(cell) else _MISSING
            if now is not contents:
                changed = "a closure variable"
                if contents is not _MISSING:
                    cell.cell_contents = contents
        return changed
    attrs = vars(value)
    for k, a in saved.items():
        if attrs.get(k, _MISSING) is not a:
            changed = f"the attribute {k}"
            type.__setattr__(value, k, a)
    for k, a in list(attrs.items()):
        if k not in saved and _is_attr_api(a):
            changed = f"the attribute {k}"
            type.__delattr__(value, k)
    return changed
