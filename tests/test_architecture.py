"""The import graph of tinytorch/ and tito/ follows the layers of docs/architecture.md.

Every import is read with `ast` (module level and inside functions, absolute and relative,
plus the names a package `__init__` re-exports lazily from a dict of module names), and each
rule is checked on the edges between our own files:

    tinytorch.datasets      imports nothing of tinytorch
    tinytorch.core          (and tinytorch/__init__.py) imports only core and datasets
    generated module N      (tinytorch/<name>.py from modules/NN_name/, N = 15..20) imports only
                            core, datasets and the generated modules before it (19 and 20 also
                            tinytorch.tuning)
    tinytorch.tuning        module 19's hand-written library: core, datasets, tuning and the
                            generated modules before 19 (it sits between module 18 and 19)
    tinytorch.infra         hand-written infrastructure: core, datasets, generated modules, tuning,
                            infra
                            (it sits above the modules: parallel_search builds on module 19;
                            no generated module imports infra, module 19 takes any `.map`)
    tinytorch.arena         student-side evaluation: anything in tinytorch
    tinytorch (all of it)   never imports tito
    tito                    anything
    no cycle among files

A failure names each offending edge as `file:line -> target`.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tinytorch", "tito")
TUNING_BELOW = 19  # tinytorch.tuning sits below generated module 19 and above module 18

# Known violations being fixed on another branch, as (src, dst) file pairs; each must still
# exist (else: remove it). Empty: keep it so, the layers hold without exceptions.
ALLOWED: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Edge:
    src: str  # file, relative to ROOT
    line: int
    module: str  # the dotted name imported
    dst: str  # file it resolves to, relative to ROOT

    def __str__(self) -> str:
        return f"{self.src}:{self.line} -> {self.module} ({self.dst})"


def module_file(name: str) -> str | None:
    """tinytorch.core.nn -> 'tinytorch/core/nn.py' (or the package's __init__.py), else None."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path.relative_to(ROOT).as_posix()
    return None


def module_name(rel: str) -> str:
    parts = rel[: -len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> list[str]:
    return sorted(
        p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
    )


def imports_of(rel: str) -> list[Edge]:
    """Every edge from `rel` to a file of ours, module level or lazy."""
    tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"), filename=rel)
    name = module_name(rel)
    package = name if rel.endswith("__init__.py") else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []  # (line, dotted name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if module_file(sub) else target))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    if rel.endswith("__init__.py") and any(
        isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body
    ):  # lazy re-exports: {name: module} dicts read by the package's __getattr__
        for stmt in tree.body:
            value = getattr(stmt, "value", None)
            if isinstance(stmt, ast.Assign | ast.AnnAssign) and isinstance(value, ast.Dict):
                for v in value.values:
                    if isinstance(v, ast.Constant) and isinstance(v.value, str):
                        for cand in (f"{package}.{v.value.lstrip('.')}", v.value):
                            if module_file(cand):
                                found.append((v.lineno, cand))
                                break
    edges = {}
    for line, target in found:
        dst = module_file(target)
        if dst and dst != rel:
            edges.setdefault((line, dst), Edge(rel, line, target, dst))
    return list(edges.values())


def generated_modules() -> dict[str, int]:
    """tinytorch/<name>.py -> module number, from modules/NN_name/*_dev.py `#| default_exp`."""
    out = {}
    for dev in sorted(ROOT.glob("modules/[0-9][0-9]_*/*_dev.py")):
        m = re.search(r"^#\| default_exp (\S+)", dev.read_text(encoding="utf-8"), re.M)
        if m:
            out[f"tinytorch/{m.group(1).replace('.', '/')}.py"] = int(dev.parent.name[:2])
    return out


def all_edges() -> list[Edge]:
    return [e for rel in source_files() for e in imports_of(rel)]


def layer(rel: str, generated: dict[str, int]) -> str:
    if rel in generated:
        return "generated"
    for folder in ("datasets", "core", "tuning", "infra", "arena", "student"):
        if rel.startswith(f"tinytorch/{folder}/"):
            return folder
    if rel == "tinytorch/__init__.py":
        return "core"
    for facade in ("nn", "optim", "utils"):  # PyTorch's names for the core: re-exports only
        if rel.startswith(f"tinytorch/{facade}/"):
            return "core"
    if rel.startswith("tito/"):
        return "tito"
    return "unplaced"


def violation(edge: Edge, generated: dict[str, int]) -> str | None:
    """Why `edge` breaks a layering rule (None if it does not)."""
    src, dst = layer(edge.src, generated), layer(edge.dst, generated)
    if edge.src.startswith("tinytorch/") and dst == "tito":
        return "the tinytorch package never imports tito"
    if src == "datasets" and dst != "datasets":
        return "tinytorch.datasets imports nothing of tinytorch"
    if src == "student" and dst != "student":
        return "tinytorch.student is standard library only: it imports nothing of tinytorch"
    if src == "core" and dst not in ("core", "datasets"):
        return "tinytorch.core imports only core and datasets"
    if src == "generated":
        if dst == "generated" and generated[edge.dst] >= generated[edge.src]:
            return (
                f"generated module {generated[edge.src]} imports only earlier modules, "
                f"not module {generated[edge.dst]}"
            )
        if dst == "tuning" and generated[edge.src] < TUNING_BELOW:
            return (f"generated module {generated[edge.src]} is below tinytorch.tuning "
                    f"(only modules {TUNING_BELOW} and later build on it)")
        if dst not in ("core", "datasets", "generated", "tuning"):
            return "a generated module imports only core, datasets and earlier modules"
    if src == "tuning":
        if dst == "generated" and generated[edge.dst] >= TUNING_BELOW:
            return (f"tinytorch.tuning sits below module {TUNING_BELOW}: it imports only the "
                    f"generated modules before it, not module {generated[edge.dst]}")
        if dst not in ("core", "datasets", "generated", "tuning"):
            return "tinytorch.tuning imports only core, datasets, tuning and modules 15-18"
    if src == "infra" and dst not in ("core", "datasets", "generated", "tuning", "infra"):
        return "tinytorch.infra imports only core, datasets, generated modules, tuning and infra"
    return None


def find_cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one file (Tarjan, iterative)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        graph[e.src].add(e.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        comp.append(top)
                        if top == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def checked_edges() -> list[Edge]:
    return [e for e in all_edges() if (e.src, e.dst) not in ALLOWED]


# ------------------------------------------------------------------------------------ tests
def test_the_parser_sees_every_kind_of_import():
    edges = {(e.src, e.dst) for e in all_edges()}
    assert ("tito/cli.py", "tito/course.py") in edges  # lazy, relative, inside a function
    assert ("tinytorch/core/zoo.py", "tinytorch/datasets/__init__.py") in edges  # absolute
    assert ("tinytorch/core/attention.py", "tinytorch/core/backends.py") in edges  # from pkg
    assert ("tito/__init__.py", "tito/grade.py") in edges  # lazy re-export dict
    assert ("tito/arena/__init__.py", "tito/arena/service.py") in edges


def test_every_tinytorch_file_has_a_layer():
    generated = generated_modules()
    assert len(generated) == 6 and sorted(generated.values()) == list(range(15, 21))
    unplaced = [f for f in source_files() if layer(f, generated) == "unplaced"]
    assert not unplaced, (
        "files outside every layer (hand-written code goes in tinytorch/core, tuning, infra or "
        "arena; "
        f"tinytorch/<name>.py is only for files generated from modules/): {unplaced}"
    )


def test_no_import_crosses_a_layer_upward():
    generated = generated_modules()
    bad = [f"{e}: {why}" for e in checked_edges() if (why := violation(e, generated))]
    assert not bad, "imports against the layers of docs/architecture.md:\n" + "\n".join(bad)


def test_no_import_cycle():
    edges = checked_edges()
    lines = []
    for comp in find_cycles(edges):
        members = set(comp)
        lines.append("cycle among " + ", ".join(comp) + ":")
        lines += [f"  {e}" for e in edges if e.src in members and e.dst in members]
    assert not lines, "\n".join(lines)


def test_allowances_are_still_needed():
    edges = {(e.src, e.dst) for e in all_edges()}
    stale = sorted(ALLOWED - edges)
    assert not stale, f"these imports are gone; remove their allowance from ALLOWED: {stale}"


def test_the_checker_catches_an_upward_edge_and_a_cycle():
    generated = generated_modules()
    up = Edge("tinytorch/core/nn.py", 1, "tinytorch.memory", "tinytorch/memory.py")
    assert "core imports only core" in violation(up, generated)
    late = Edge("tinytorch/memory.py", 1, "tinytorch.autotuning", "tinytorch/autotuning.py")
    assert "imports only earlier modules" in violation(late, generated)
    up_tuning = Edge("tinytorch/tuning/search.py", 1, "tinytorch.autotuning",
                     "tinytorch/autotuning.py")
    assert "sits below module 19" in violation(up_tuning, generated)
    to_infra = Edge("tinytorch/tuning/executor.py", 1, "tinytorch.infra", "tinytorch/infra/x.py")
    assert "tinytorch.tuning imports only" in violation(to_infra, generated)
    early = Edge("tinytorch/memory.py", 1, "tinytorch.tuning", "tinytorch/tuning/__init__.py")
    assert "below tinytorch.tuning" in violation(early, generated)
    ok = Edge("tinytorch/autotuning.py", 1, "tinytorch.tuning.search", "tinytorch/tuning/search.py")
    assert violation(ok, generated) is None
    tito = Edge("tinytorch/arena/harness.py", 1, "tito.arena", "tito/arena/__init__.py")
    assert "never imports tito" in violation(tito, generated)
    a, b, c = "tito/a.py", "tito/b.py", "tito/c.py"
    ring = [Edge(a, 1, "", b), Edge(b, 1, "", c), Edge(c, 1, "", a), Edge(c, 1, "", "tito/d.py")]
    assert find_cycles(ring) == [[a, b, c]]


def test_the_architecture_doc_names_every_folder():
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    folders = sorted(
        p.parent.relative_to(ROOT).as_posix() + "/"
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("__init__.py")
    )
    missing = [f for f in folders if f not in doc]
    assert not missing, f"docs/architecture.md does not describe {missing}"
