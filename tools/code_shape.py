"""Code-shape figures anyone can rerun: long functions and the size of a class.

    python tools/code_shape.py                      # functions over 80 lines in the project
    python tools/code_shape.py --over 120           # another limit
    python tools/code_shape.py --class cxrlt_desktop/ui/main_window.py:MainWindow

Counts physical lines from ``def`` to the function's last line (decorators and docstrings
included). Attributes of a class are the distinct ``self.<name> = ...`` targets in its methods.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOTS = ("cxrlt_desktop", "engine", "training")


def long_functions(root: Path, over: int) -> list[tuple[int, str]]:
    found = []
    for path in sorted(p for r in ROOTS for p in (root / r).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > over:
                    found.append((n, f"{path.relative_to(root)}:{node.lineno} {node.name}"))
    return sorted(found, reverse=True)


def class_shape(path: Path, name: str) -> tuple[int, int, int]:
    """(lines of the file, methods, attributes) of class ``name`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name)
    methods = [n for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    attrs = set()
    for m in methods:
        for node in ast.walk(m):
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                targets = [node.target]
            for t in targets:
                for el in t.elts if isinstance(t, ast.Tuple) else [t]:
                    if isinstance(el, ast.Attribute) and isinstance(el.value, ast.Name):
                        if el.value.id == "self":
                            attrs.add(el.attr)
    return len(text.splitlines()), len(methods), len(attrs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--over", type=int, default=80)
    ap.add_argument("--class", dest="cls", metavar="FILE:CLASS")
    args = ap.parse_args()
    root = Path(__file__).resolve().parent.parent
    if args.cls:
        file, name = args.cls.split(":")
        lines, methods, attrs = class_shape(root / file, name)
        print(f"{file}: {lines} lines; class {name}: {methods} methods, {attrs} attributes")
        return
    found = long_functions(root, args.over)
    for n, where in found:
        print(f"{n:5d}  {where}")
    print(f"{len(found)} functions over {args.over} lines")


if __name__ == "__main__":
    main()
