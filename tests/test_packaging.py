"""What `pip install .` gives a user: every library asr imports is declared in pyproject.toml."""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_level_modules() -> set[str]:
    """The top-level names of every absolute import under asr/, the standard library and asr left out."""
    names = set()
    for path in (ROOT / "asr").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"asr"}


def test_every_imported_library_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    declared = {canonical(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in requirements}
    providers = importlib.metadata.packages_distributions()
    missing = {module: providers.get(module) for module in imported_top_level_modules()
               if not declared & {canonical(dist) for dist in providers.get(module, [module])}}
    assert not missing, f"imported by asr/ but not declared in pyproject.toml (module: distributions): {missing}"
