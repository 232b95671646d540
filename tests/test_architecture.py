"""The code's shape: the layers of the data path import only downwards, nothing imports in a
cycle, and no module reaches for another's private names.

Every import counts, also those inside functions: a lazy import is still a dependency. The ranks
follow the data path (docs/architecture.md): ``spec`` (what a model is) and ``util`` import
nothing else of ssmgen; ``golden`` computes with the spec; ``hw`` builds circuits of it and
``sw_driver`` talks to them; ``sim`` and ``synth`` run the circuits; ``design`` ties one design's
pieces together; ``stimulus`` feeds it; ``train`` produces models and ``verify`` checks them;
``demo``, ``testing`` (the pytest helper) and ``cli`` are the entry points. A module may
import its own rank or below, never above.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Longest matching prefix wins.
RANKS = {
    "ssmgen.spec": 0, "ssmgen.util": 0,
    "ssmgen.golden": 1,
    "ssmgen.hw.datapath": 2, "ssmgen.hw.link": 2.1, "ssmgen.hw": 2.2,
    "ssmgen.sw_driver": 2.3,
    "ssmgen.sim": 3, "ssmgen.synth": 3,
    "ssmgen.design": 4,
    "ssmgen.stimulus": 4.5,
    "ssmgen.train": 5, "ssmgen.verify": 5, "ssmgen.sweep": 5.5,
    "ssmgen.demo": 6, "ssmgen.testing": 6,
    "ssmgen.cli": 7,
}


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name (pyproject's package-dir map)."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    modules = {}
    for package, folder in setup["package-dir"].items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join([package, *parts])
            if name.endswith(".__init__"):
                name = name[: -len(".__init__")]
            if not any(name == p or name.startswith(p + ".") for p in setup["package-dir"]
                       if p != package and p.startswith(package + ".")):
                modules[name] = path
    return modules


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str) -> list[tuple[str, list[str], int]]:
    """(imported ssmgen module, names taken from it, line) for every import in module ``name``."""
    tree = ast.parse(MODULES[name].read_text())
    base = name if _is_package(name) else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("ssmgen")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                parts = parts[: len(parts) - node.level + 1]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("ssmgen"):
                continue
            names = [a.name for a in node.names]
            # `from package import module` imports that module
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            found += [(s, [], node.lineno) for s in subs]
            rest = [n for n in names if f"{target}.{n}" not in MODULES]
            if rest or not subs:
                found.append((target, rest, node.lineno))
    return found


def _rank(name: str) -> float:
    prefix = max((p for p in RANKS if name == p or name.startswith(p + ".")), key=len)
    return RANKS[prefix]


def test_every_module_has_a_rank():
    unranked = [m for m in MODULES if m != "ssmgen"
                and not any(m == p or m.startswith(p + ".") for p in RANKS)]
    assert not unranked, f"give these a rank in RANKS: {unranked}"


def test_imports_point_down_the_data_path():
    upward = [f"{m} (rank {_rank(m)}) line {line} imports {t} (rank {_rank(t)})"
              for m in MODULES if m != "ssmgen"
              for t, _, line in _imports(m) if t != "ssmgen" and _rank(t) > _rank(m)]
    assert not upward, "\n".join(upward)


def test_spec_is_a_leaf():
    for leaf in ("ssmgen.spec", "ssmgen.util"):
        outside = [f"{m} line {line} imports {t}" for m in MODULES if m.startswith(leaf)
                   for t, _, line in _imports(m) if not t.startswith(leaf)]
        assert not outside, "\n".join(outside)


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    # Tarjan's strongly connected components: any component of two or more is a cycle
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_names_across_modules():
    private = [f"{m} line {line} takes {n} from {t}" for m in MODULES
               for t, names, line in _imports(m) if t != m
               for n in names if n.startswith("_") and not n.startswith("__")]
    assert not private, "\n".join(private)


def test_layer_and_network_have_one_path():
    """Only the Design's construction tells a layer from a network by type."""
    offenders = []
    for name, path in MODULES.items():
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if "isinstance(" in line and "QuantizedNetwork" in line and name != "ssmgen.design":
                offenders.append(f"{name} line {lineno}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
