"""The package's layers, read from its source: every `import asr...` and `from asr... import`, at module level or
inside a function, is an edge of the import graph, which must have no cycle and no edge upwards or sideways:
core < {inference, training, inspection, corpora} < the command line. And at run time the layers below training
load no Lightning (it takes seconds to import, and only training needs it)."""

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "asr"
LAYERS = {"core": 0, "inference": 1, "training": 1, "inspection": 1, "corpora": 1, "entry": 2}


def module_name(path: Path) -> str:
    """asr/core/audio.py -> asr.core.audio; asr/core/__init__.py -> asr.core."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(tree: ast.AST, known: set[str]) -> set[str]:
    """The asr modules a module's source imports: `from asr.core import config` names the module asr.core.config,
    `from asr.core.audio import load_audio` the module asr.core.audio."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                      for alias in node.names}
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    """module -> the asr modules it imports (anywhere in its source)."""
    known = modules()
    return {name: imported(ast.parse(path.read_text(encoding="utf-8"), str(path)), set(known)) - {name}
            for name, path in known.items()}


def layer(module: str) -> str:
    """asr.core.audio -> core; the modules at the top (asr.cli, asr.__main__, the package's lazy public names in
    asr/__init__.py) -> entry."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else "entry"


def test_the_import_graph_is_read_from_the_source():
    graph = import_graph()  # a check of the checker: edges it must see, at module level and inside functions
    assert "asr.core.config" in graph["asr.core.bundle"]  # from asr.core import config
    assert "asr.inference.torch_network" in graph["asr.inference.transcribe"]  # inside a function
    assert "asr.inference.transcribe" in graph["asr.cli"]
    assert {layer(m) for m in graph} == set(LAYERS), "a module outside the known layers: add it to LAYERS"


def test_the_package_has_no_import_cycle():
    try:
        order = list(TopologicalSorter(import_graph()).static_order())
    except CycleError as cycle:
        raise AssertionError(f"import cycle: {' -> '.join(cycle.args[1])}") from None
    assert len(order) == len(import_graph())


def test_no_module_imports_its_own_layer_s_peers_or_a_layer_above():
    upward = [f"{module} ({layer(module)}) imports {target} ({layer(target)})"
              for module, targets in sorted(import_graph().items()) for target in sorted(targets)
              if layer(target) != layer(module) and LAYERS[layer(target)] >= LAYERS[layer(module)]]
    assert upward == [], "\n".join(upward)


def test_the_layers_below_training_load_no_lightning():
    # each module is imported in turn in one fresh interpreter; the first that brings Lightning in is named
    below = [m for m in modules() if layer(m) != "training" and m != "asr.__main__"]  # __main__ runs the CLI
    code = ("import importlib, sys\n"
            f"for name in {below!r}:\n"
            "    importlib.import_module(name)\n"
            "    if 'lightning' in sys.modules or 'pytorch_lightning' in sys.modules:\n"
            "        sys.exit(f'import {name} loaded Lightning')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"asr.core.audio", "asr.inspection.check", "asr.inference.transcribe", "asr.cli"} <= set(below)
