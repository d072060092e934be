"""The house has no import circle and no arrow running back up (issue 29, "Done when").

Why a test and not a picture: a circle is added by one innocent import deferred into a function,
which Python tolerates and a reader does not see. Here every import counts, wherever it is written:
at module level, inside a function, under ``if TYPE_CHECKING:``, and the names a package
re-exports (its ``__init__``) or loads lazily through a ``_LAZY`` table. Importing ``a.b.c``
also runs the packages ``a`` and ``a.b``, so those count as arrows too (except a module's own
enclosing packages, which Python has always started before it).

The layer order is docs/ARCHITECTURE.md's: ``cli / api → report / probe → check → attest /
compress / policy → evaluate → pack → codec``, and the leaves below them all. An arrow between two
top-level parts must point strictly down; a leaf imports only leaves.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from support.paths import REPO

PACKAGE = "uc_attest"
INTERNAL = f"{PACKAGE}._internal"

LEAVES = frozenset(
    {
        "errors", "version", "digests", "atomic", "safe_io", "outputs", "model_files", "source_model",
        "resources", "architecture", "estimate", "progress", "demo_model",
    }
)
"""Modules every layer may use; they import only one another."""

RANK = {
    "codec": 0,
    "pack": 1,
    "evaluate": 2,
    "attest": 3, "compress": 3, "policy": 3,
    "check": 4,
    "probe": 5, "report": 5,
    "cli": 6, "api": 6, "demo": 6,
    "<face>": 7,
}
"""Each top-level part of uc_attest/_internal and its floor; ``<face>`` is uc_attest/__init__.py and __main__.py."""


def module_files() -> dict[str, tuple[Path | None, bool]]:
    """Every module of the package: dotted name -> (source file or None for a compiled extension, is a package)."""
    modules: dict[str, tuple[Path | None, bool]] = {}
    for path in (REPO / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    for source in (REPO / PACKAGE).rglob("*.c"):  # a C extension (built or not) is a module with no imports of ours
        modules[".".join(source.relative_to(REPO).with_suffix("").parts)] = (None, False)
    return modules


def _lazy_table(tree: ast.Module) -> list[str]:
    """The module names of a module-level ``_LAZY = {name: module}`` table (a package's lazily loaded names)."""
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and target.id == "_LAZY" and isinstance(node.value, ast.Dict):  # type: ignore[union-attr]
            values = node.value.values  # type: ignore[union-attr]
            assert all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in values), "_LAZY holds literal module names"
            return [v.value for v in values]  # type: ignore[union-attr]
    return []


def imports_of(name: str, path: Path, is_package: bool, modules: dict[str, tuple[Path | None, bool]]) -> Iterator[str]:
    """The modules of ours that ``name`` imports anywhere in its source, each resolved to a real module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = name.split(".") if is_package else name.split(".")[:-1]
    requested: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            requested += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            requested += [(base, alias.name) for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module":
            assert _lazy_table(tree), f"{name}: import_module outside a _LAZY table hides an import from this test"
    for module in _lazy_table(tree):
        requested.append((".".join(here) + module if module.startswith(".") else f"{INTERNAL}.{module}", None))
    for base, member in requested:
        if base != PACKAGE and not base.startswith(PACKAGE + "."):
            continue
        if member is not None and f"{base}.{member}" in modules:
            target = f"{base}.{member}"  # `from package import submodule`
        else:
            assert base in modules, f"{name} imports {base}, which is no module of ours"
            target = base
        yield target
        parts = target.split(".")
        for depth in range(2, len(parts)):  # importing a.b.c runs a.b first, unless it encloses the importer
            parent = ".".join(parts[:depth])
            if parent in modules and not name.startswith(parent + "."):
                yield parent


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        if path is not None:
            graph[name] |= set(imports_of(name, path, is_package, modules)) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def part_of(module: str) -> str:
    """The top-level part of uc_attest/_internal a module belongs to (``<face>`` for uc_attest itself)."""
    if not module.startswith(INTERNAL + "."):
        return "<face>"
    return module[len(INTERNAL) + 1 :].split(".")[0]


def arrows_up(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for source, targets in graph.items():
        for target in targets:
            a, b = part_of(source), part_of(target)
            if target == INTERNAL or a == b:
                continue
            if a in LEAVES:
                if b not in LEAVES:
                    wrong.append(f"{source} -> {target} (a leaf imports {b})")
            elif b not in LEAVES and RANK[b] >= RANK[a]:
                wrong.append(f"{source} -> {target} ({a} is not above {b})")
    return sorted(wrong)


def short(module: str) -> str:
    return module.removeprefix(INTERNAL + ".")


def test_every_part_has_a_floor() -> None:
    parts = {part_of(m) for m in module_files()} - {"_internal"}
    assert parts - LEAVES - set(RANK) == set(), "a new top-level module needs a floor here and a row in docs/ARCHITECTURE.md"
    assert parts >= LEAVES | set(RANK), "a part named here no longer exists"


def test_no_import_circle_even_through_deferred_imports() -> None:
    found = cycles(import_graph())
    assert found == [], "import circles: " + "; ".join(" <-> ".join(map(short, c)) for c in found)


def test_no_arrow_runs_back_up() -> None:
    assert arrows_up(import_graph()) == []


def test_the_graph_sees_deferred_lazy_and_type_only_imports() -> None:
    """The detector itself: what Python tolerates at run time is still an arrow here."""
    graph = import_graph()
    assert f"{INTERNAL}.codec.codebook" in graph[f"{INTERNAL}.codec"]  # _LAZY
    assert f"{INTERNAL}.api" in graph[PACKAGE]  # _LAZY and TYPE_CHECKING of the public face
    assert f"{INTERNAL}.compress.target" in graph[f"{INTERNAL}.compress.pipeline"]  # deferred into a function
    assert f"{INTERNAL}.codec" in graph[f"{INTERNAL}.pack.decode"] or any(
        t.startswith(f"{INTERNAL}.codec") for t in graph[f"{INTERNAL}.pack.decode"]
    )
    circle = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles({k: set(v) for k, v in circle.items()}) == [["a", "b", "c"]]
    up = {f"{INTERNAL}.pack.x": {f"{INTERNAL}.check.y"}, f"{INTERNAL}.errors": {f"{INTERNAL}.pack.x"}, f"{INTERNAL}.check.y": set()}
    assert arrows_up(up) == [
        f"{INTERNAL}.errors -> {INTERNAL}.pack.x (a leaf imports pack)",
        f"{INTERNAL}.pack.x -> {INTERNAL}.check.y (pack is not above check)",
    ]


def test_every_module_is_named_in_the_architecture_tables() -> None:
    """docs/ARCHITECTURE.md's tables name every module: a top-level one by its own row, a package's by its file name in
    the package's row. A module nobody can find on the map is where the next duplicate starts."""
    rows: dict[str, str] = {}
    for line in (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            head = line.split(" | ")[0]
            for name in re.findall(r"`uc_attest\._internal\.(\w+)`", head):
                rows[name] = line
    missing = []
    for name in module_files():
        if not name.startswith(INTERNAL + "."):
            continue
        parts = name[len(INTERNAL) + 1 :].split(".")
        if parts[0] not in rows or len(parts) > 1 and not re.search(rf"`{parts[-1]}(\.py|\.c)?`|\b{parts[-1]}\.(py|c)\b", rows[parts[0]]):
            missing.append("/".join(parts))
    assert missing == [], "modules the tables of docs/ARCHITECTURE.md do not name: " + ", ".join(missing)
