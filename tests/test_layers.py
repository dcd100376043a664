"""The three layers of tasknb, checked on the import graph (AST, nothing is imported).

- kernels (``tasknb/*.py``, ``tasknb/networks/``): never import a chapter or book tooling, never plot;
- chapters (``tasknb/chapters/<id>_<slug>.py``): named after a notebook, import kernels and
  ``tasknb.book.plotting`` only, never another chapter;
- book tooling (``tasknb/book/``): may use kernels, never a chapter;
- nowhere: an import of another module's private name (``from .x import _y``, ``x._y``), or a
  tasknb import hidden inside a function.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tasknb"
#: modules a kernel may not import: plotting and widget libraries
PLOTTING_LIBRARIES = ("matplotlib", "seaborn", "ipywidgets", "IPython")
#: book tooling a chapter may import
CHAPTER_MAY_USE = ("tasknb.book.plotting",)


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(name: str) -> str:
    if name == "tasknb.chapters" or name.startswith("tasknb.chapters."):
        return "chapter"
    if name == "tasknb.book" or name.startswith("tasknb.book."):
        return "book"
    return "kernel"


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, package: Path):
    """Yield (imported module, imported name or None, line, inside a function?) for one source file."""
    module = module_name(path, package)
    tree = ast.parse(path.read_text(), filename=str(path))
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        inside = id(node) in nested
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno, inside
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                is_module = (package.parent / Path(*sub.split("."))).with_suffix(".py").exists() or \
                    (package.parent / Path(*sub.split("."))).is_dir()
                yield (sub, None, node.lineno, inside) if is_module else (target, alias.name, node.lineno, inside)


def private_attribute_uses(path: Path, package: Path):
    """Yield (module alias, attribute, line) for ``alias._name`` where alias names an imported tasknb module."""
    tree = ast.parse(path.read_text())
    aliases = {}
    module = module_name(path, package)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            for a in node.names:
                sub = f"{target}.{a.name}"
                if (package.parent / Path(*sub.split("."))).with_suffix(".py").exists():
                    aliases[a.asname or a.name] = sub
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(package.name) and a.asname:
                    aliases[a.asname] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            yield aliases[node.value.id], node.attr, node.lineno


def notebook_stems(root: Path) -> set[str]:
    return {p.stem for p in (root / "notebooks").glob("part_*/*.md")}


def layer_violations(package: Path, notebooks: set[str]) -> list[str]:
    """Every breach of the layering rules in ``package``, as readable strings (empty when clean)."""
    problems = []
    pkg = package.name
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package)
        kind = layer(name.replace(pkg, "tasknb", 1))
        where = f"{path.relative_to(package.parent)}"
        if kind == "chapter" and path.name != "__init__.py" and path.stem not in notebooks:
            problems.append(f"{where}: a chapter module must be named after a notebook (no notebooks/*/{path.stem}.md)")
        for target, imported, line, inside in imports_of(path, package):
            internal = target == pkg or target.startswith(pkg + ".")
            t = target.replace(pkg, "tasknb", 1)
            if kind == "kernel" and target.split(".")[0] in PLOTTING_LIBRARIES:
                problems.append(f"{where}:{line}: kernel imports the plotting library {target}")
            if internal and inside:
                problems.append(f"{where}:{line}: tasknb import of {t} hidden inside a function")
            if internal and imported and imported.startswith("_") and not imported.startswith("__") \
                    and t != name.replace(pkg, "tasknb", 1):
                problems.append(f"{where}:{line}: imports the private name {imported} of {t}")
            if not internal or t == "tasknb":
                continue
            other = layer(t)
            if kind == "kernel" and other in ("chapter", "book"):
                problems.append(f"{where}:{line}: kernel imports {other} module {t}")
            elif kind == "chapter" and other == "chapter" and t != "tasknb.chapters":
                problems.append(f"{where}:{line}: chapter imports another chapter, {t}")
            elif kind == "chapter" and other == "book" and not any(t.startswith(m) for m in CHAPTER_MAY_USE):
                problems.append(f"{where}:{line}: chapter imports book tooling other than plotting, {t}")
            elif kind == "book" and other == "chapter":
                problems.append(f"{where}:{line}: book tooling imports the chapter {t}")
        for target, attr, line in private_attribute_uses(path, package):
            problems.append(f"{where}:{line}: uses the private name {attr} of {target.replace(pkg, 'tasknb', 1)}")
    return list(dict.fromkeys(problems))


def test_tasknb_respects_its_layers():
    problems = layer_violations(PACKAGE, notebook_stems(ROOT))
    assert not problems, "layering violations:\n" + "\n".join(problems)


def test_every_layer_is_present():
    assert (PACKAGE / "chapters" / "__init__.py").is_file()
    assert (PACKAGE / "book" / "__init__.py").is_file()
    chapters = {p.stem for p in (PACKAGE / "chapters").glob("*.py")} - {"__init__"}
    assert chapters, "no chapter modules"
    assert chapters <= notebook_stems(ROOT)


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "tasknb"


@pytest.mark.parametrize("files, expected", [
    ({"tasknb/geometry.py": "from .chapters.c1_demo import x\n"}, "kernel imports chapter"),
    ({"tasknb/geometry.py": "from .book.plotting import f\n"}, "kernel imports book"),
    ({"tasknb/geometry.py": "import matplotlib.pyplot as plt\n"}, "plotting library"),
    ({"tasknb/chapters/c2_other.py": "from .c1_demo import x\n"}, "chapter imports another chapter"),
    ({"tasknb/chapters/c2_other.py": "from ..book.widgets import w\n"}, "other than plotting"),
    ({"tasknb/chapters/c9_unknown.py": "x = 1\n"}, "named after a notebook"),
    ({"tasknb/book/plotting.py": "from ..chapters.c1_demo import x\n"}, "book tooling imports the chapter"),
    ({"tasknb/geometry.py": "from .data import _hidden\n"}, "private name _hidden"),
    ({"tasknb/geometry.py": "from . import data\ny = data._hidden\n"}, "private name _hidden"),
    ({"tasknb/geometry.py": "def f():\n    from .data import load\n"}, "hidden inside a function"),
])
def test_the_checker_catches_each_kind_of_violation(tmp_path, files, expected):
    base = {"tasknb/__init__.py": "", "tasknb/data.py": "_hidden = 1\nload = 2\n", "tasknb/geometry.py": "",
            "tasknb/chapters/__init__.py": "", "tasknb/chapters/c1_demo.py": "from ..data import load\nx = 1\n",
            "tasknb/book/__init__.py": "", "tasknb/book/plotting.py": "f = 1\n", "tasknb/book/widgets.py": "w = 1\n"}
    package = _write(tmp_path, {**base, **files})
    notebooks = {"c1_demo", "c2_other"}
    clean = _write(tmp_path / "clean", base)
    assert layer_violations(clean, notebooks) == []
    problems = layer_violations(package, notebooks)
    assert any(expected in p for p in problems), problems


def test_package_docstring_names_every_module():
    """``tasknb/__init__``'s docstring is the map of the library: every kernel and tooling module is on it."""
    import tasknb

    doc = tasknb.__doc__
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path, PACKAGE)
        if path.name in ("__init__.py", "__main__.py") or layer(name) == "chapter":
            continue
        short = name.split(".", 1)[1]
        if layer(name) == "book":
            short = short.split(".", 1)[1]
        if f"``{short}``" not in doc:
            missing.append(name)
    assert not missing, f"tasknb's docstring does not describe: {missing}"
