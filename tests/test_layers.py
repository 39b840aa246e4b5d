"""The layers import downwards only, as docs/design.md draws them: storage
and model import no other layer, repo imports those two, the engine repo,
model and storage, the services the engine and below, the CLI everything.
The modules beside the layers (errors, paths, settings, the package root)
any layer may import. Read from the source with ast, so a lazy import
inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import strongroom

PACKAGE = Path(strongroom.__file__).parent

# The other layers each layer may import (as strongroom.<name>).
MAY_IMPORT = {
    "storage": (),
    "model": (),
    "repo": ("storage", "model"),
    "engine": ("repo", "model", "storage"),
    "sources": (),
    "services": ("engine", "model", "repo", "storage", "sources"),
    "cli": ("services", "engine", "model", "repo", "storage", "sources"),
}

# (module, imported package) pairs that break the rule today, each with why it
# cannot be fixed yet. Keep this empty where possible: an entry is a debt.
ALLOWED: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path) -> set[str]:
    """Absolute names of the strongroom modules `path` imports, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            # `from strongroom import engine` imports a package too.
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "strongroom" or n.startswith("strongroom.")}


def _violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        layer = module.split(".")[1] if "." in module else None
        for imported in sorted(_imported(path)):
            parts = imported.split(".")
            target = parts[1] if len(parts) > 1 else None
            upward = layer in MAY_IMPORT and target in MAY_IMPORT and target != layer \
                and target not in MAY_IMPORT[layer]
            if upward and (module, target) not in ALLOWED:
                found.append(f"{module} imports {imported}")
    return found


def test_every_layer_imports_only_the_layers_below_it():
    # The scan reads the real package (the engine does use the repository layer)...
    assert "strongroom.repo.repository" in _imported(PACKAGE / "engine" / "check.py")
    # ...and finds nothing pointing up.
    assert _violations() == []


def test_the_allow_list_names_only_imports_that_still_exist():
    for module, target in ALLOWED:
        path = PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")
        if not path.exists():
            path = path.with_suffix("") / "__init__.py"
        assert any(i.split(".")[1:2] == [target] for i in _imported(path)), \
            f"{module} no longer imports strongroom.{target}: remove its entry from ALLOWED"


@pytest.mark.parametrize("source, expected", [
    ("from strongroom.repo.cache import default_cache_root", "strongroom.storage.x imports strongroom.repo.cache"),
    ("def f():\n    import strongroom.engine.check", "strongroom.storage.x imports strongroom.engine.check"),
    ("from .. import repo", "strongroom.storage.x imports strongroom.repo"),
    ("from strongroom.model.tree import Tree", "strongroom.storage.x imports strongroom.model.tree"),
])
def test_the_scan_sees_an_upward_import(tmp_path, monkeypatch, source, expected):
    """The rule is checked by the scan above; here the scan is shown to find what it looks for."""
    fake = tmp_path / "strongroom"
    (fake / "storage").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "storage" / "__init__.py").write_text("")
    (fake / "storage" / "x.py").write_text(source + "\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert expected in _violations()
