"""The library state grading protects: a worker's pristine ``Template`` and the ``Guard``.

A ``Template`` is prepared once per worker (or zygote, tito/boundary.py): it imports what the
trusted cells import, puts a ``ReferenceBlocker`` in front of ``sys.meta_path`` and snapshots
the library state in a ``Guard``. Every grading child is forked from it (tito/sandbox.py).

After every cell the child calls ``Guard.check``: module attributes that are callables or
modules, attributes of library classes, ``sys.modules``, ``sys.meta_path``, ``gc.callbacks``,
``sys.path_importer_cache`` ... are compared with the snapshot, put back, and each change is
named (a change made while a grade cell ran voids that cell; docs/grading.md says why).

Only the standard library is used here (numpy, tinytorch and tqdm only when present, to
pin BLAS threads and quiet tqdm before the snapshot).
"""

from __future__ import annotations

import gc
import os
import sys
import types
from collections.abc import Iterable, Sequence

_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE
_IMMUTABLETYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE (3.10+)
_MISSING = object()


class Template:
    """A worker's pristine state: trusted imports done, library state snapshotted. Forked
    children start from exactly this state (copy-on-write), so no student leaves anything
    behind for the next one."""

    def __init__(self, preload: Iterable[str], blocked: Sequence[str], package_dir: str | None):
        self.preload_errors: dict[str, str] = {}
        os.environ.setdefault("MPLBACKEND", "Agg")
        self._pin_blas()
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
    def _pin_blas() -> None:
        """One BLAS thread in numpy's pools, before the snapshot and the guard (which refuses
        the native calls this needs): forked children inherit the pin, and the setup cells' own
        ``pin_blas_threads(1)`` finds it made (tinytorch/core/threads.py)."""
        try:
            import numpy  # noqa: F401  (the pools to pin must be loaded)

            from tinytorch.core.threads import pin_blas_threads
        except ImportError:  # a course without tinytorch: nothing to pin
            return
        pin_blas_threads(1)

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
