"""The package's layers (binsr/__init__.py): each subpackage imports only the layers below it, no module imports
itself back through others, and the notebooks' figure modules share code only through `viz.common`."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "binsr"
LAYERS = ["base", "nn", "data", "engine", "evaluation", "training", "viz"]
BELOW = {  # what each layer may import besides itself; the top (cli, demo, __main__) may import anything
    "base": set(),
    "nn": {"base"},
    "data": {"base"},
    "engine": {"base", "nn"},
    "evaluation": {"base", "nn", "data", "engine"},
    "training": {"base", "nn", "data", "engine", "evaluation"},
    "viz": {"base", "nn", "data", "engine", "evaluation", "training"},
}
VIZ_SHARED = {"common", "interact", "lesson"}  # the helpers every notebook's figure module may use


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def binsr_imports(path: Path, annotations: bool = True) -> set[str]:
    """The binsr modules `path` imports, anywhere in the file (functions included); those of its `if
    TYPE_CHECKING:` blocks, which only annotations read, unless `annotations` is False."""
    tree = ast.parse(path.read_text())
    if not annotations:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("binsr.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "binsr":
            for alias in node.names:  # `from binsr.engine import xnor` imports the module binsr.engine.xnor
                candidate = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                found.add(candidate if is_module else node.module)
    return found


MODULES = {module_name(p): binsr_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}
RUN_TIME = {module_name(p): binsr_imports(p, annotations=False) for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_sits_in_a_layer_or_at_the_top():
    top = sorted(m for m in MODULES if m != "binsr" and layer(m) is None)
    assert top == ["binsr.__main__", "binsr.cli", "binsr.demo"]
    assert {layer(m) for m in MODULES} - {None} == set(LAYERS)


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for module, imports in MODULES.items():
        own = layer(module)
        if own is None:
            continue
        for target in imports:
            if layer(target) not in BELOW[own] | {own}:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_no_import_cycle():
    """A depth-first walk of the import graph meets no module that is still on its own path (imports for
    annotations only, under TYPE_CHECKING, run never and close no cycle)."""
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(RUN_TIME.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_a_notebook_figure_module_uses_no_other_notebook_module():
    wrong = []
    for module, imports in MODULES.items():
        if module.startswith("binsr.viz.") and module.split(".")[-1] not in VIZ_SHARED:
            others = {t for t in imports if t.startswith("binsr.viz.") and t.split(".")[-1] not in VIZ_SHARED}
            wrong += [f"{module} imports {t}" for t in sorted(others)]
    assert wrong == []


def test_the_checks_see_a_violation():
    """The walk itself works: a known import is found, so an empty list above means none, not a blind parser."""
    assert "binsr.nn.models" in MODULES["binsr.nn.checkpoint"]
    assert "binsr.engine.xnor" in MODULES["binsr.engine.runtime"]
    assert "binsr.engine.runtime" in MODULES["binsr.engine.tiling"] - RUN_TIME["binsr.engine.tiling"]
