"""A custom import-linter contract for survpgc: no private name crosses a package boundary.

import-linter's own ``private_modules`` contract covers private *modules* (``survpgc.foo._bar``). This one
covers private *names*: ``from survpgc.train.cv import _loader`` in a module outside ``survpgc.train``. A
name is private when it starts with one underscore (dunder names are public). Imports are read from every
module's source with ``ast`` -- function-level imports included -- and an import is allowed only when the
importer lies inside the top-level subpackage of the module it imports from (``survpgc.<package>``).

Used by ``.importlinter`` (``make imports``; ``PYTHONPATH=tools``).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _package_of(module: str, depth: int) -> str:
    return ".".join(module.split(".")[:depth])


def _source_file(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _absolute(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_name_imports(modules: set[str], root: str, depth: int = 2):
    """Yield ``(importer, imported module, name, line)`` for private names imported across packages."""
    for importer in sorted(modules):
        path = _source_file(importer)
        if path is None:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _absolute(importer, is_package, node)
            if not (source == root or source.startswith(root + ".")):
                continue
            if _package_of(importer, depth) == _package_of(source, depth):
                continue
            for alias in node.names:
                if _is_private(alias.name):
                    yield importer, source, alias.name, node.lineno


class PrivateNamesContract(Contract):
    """No module imports a private name (``_x``) from another top-level package of the root package."""

    type_name = "private_names"

    root = fields.StringField()
    depth = fields.IntegerField(minimum=1, default=2)

    def check(self, graph, verbose: bool) -> ContractCheck:
        root = str(self.root)
        modules = {m for m in graph.modules if m == root or m.startswith(root + ".")}
        found = list(private_name_imports(modules, root, int(self.depth)))  # type: ignore[arg-type]
        return ContractCheck(kept=not found, warnings=[], metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, source, name, line in check.metadata["found"]:
            output.print_error(f"{importer} (l. {line}) imports private name {name} from {source}")
            output.new_line()
