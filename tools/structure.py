"""Print the structure figures a reviewer asks for: the largest modules, the functions over a length, and
the import cycles between modules (function-level imports included, read by grimp).

    .venv/bin/python tools/structure.py [--src src] [--top 15] [--min-lines 80]

Run it on any checkout (e.g. a `git worktree` of an older commit) to compare before and after a change.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def module_sizes(src: Path) -> list[tuple[int, str]]:
    return sorted(((len(p.read_text().splitlines()), str(p.relative_to(src))) for p in src.rglob("*.py")), reverse=True)


def long_functions(src: Path, min_lines: int) -> list[tuple[int, str, str]]:
    rows = []
    for p in src.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > min_lines:
                    rows.append((n, f"{p.relative_to(src)}:{node.lineno}", node.name))
    return sorted(rows, reverse=True)


def module_cycles(graph) -> list[list[str]]:
    """Strongly connected components (size > 1) of the module import graph."""
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:  # Tarjan, iterative enough for a package of this size
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for m in sorted(edges):
        if m not in index:
            visit(m)
    return out


def package_cycles(graph, depth: int = 2) -> list[list[str]]:
    """Pairs of top-level packages that import each other, directly or through others."""
    top = {".".join(m.split(".")[:depth]) for m in graph.modules if m.count(".") >= depth - 1}
    out = []
    for a in sorted(top):
        for b in sorted(top):
            if a < b and graph.chain_exists(a, b, as_packages=True) and graph.chain_exists(b, a, as_packages=True):
                out.append([a, b])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default="src", type=Path)
    ap.add_argument("--package", default="survpgc")
    ap.add_argument("--top", default=15, type=int)
    ap.add_argument("--min-lines", default=80, type=int)
    a = ap.parse_args()
    root = a.src / a.package
    lines = []
    sizes = module_sizes(root)
    lines.append(f"modules: {len(sizes)}, lines: {sum(n for n, _ in sizes)}; largest:")
    lines += [f"  {n:5d}  {name}" for n, name in sizes[: a.top]]
    rows = long_functions(root, a.min_lines)
    lines.append(f"functions over {a.min_lines} lines (docstrings included): {len(rows)}")
    lines += [f"  {n:5d}  {name}  ({where})" for n, where, name in rows]
    sys.path.insert(0, str(a.src.resolve()))
    import grimp

    graph = grimp.build_graph(a.package, cache_dir=None)  # function-level imports included
    cycles = module_cycles(graph)
    lines.append(f"import cycles between modules (function-level imports included): {len(cycles)}")
    lines += ["  " + " <-> ".join(comp) for comp in cycles]
    pairs = package_cycles(graph)
    lines.append(f"pairs of top-level packages that import each other (directly or not): {len(pairs)}")
    lines += ["  " + " <-> ".join(p) for p in pairs]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
