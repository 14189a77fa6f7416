"""The package's import order, read from the source (no imports run): every import points down the layers
(or stays inside its own package), no modules import each other in a circle, and no private name
(``_x``) is imported from another module. There is no exceptions list."""
import ast
import pathlib
from typing import Dict, Iterator, List, Optional, Set, Tuple

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("ms_suite", "model_zoo")

# Lowest first. A layer holds units; a unit is one or more packages (or modules) that form one part of
# the design, e.g. the models: the registry in ms_suite/models and the families in model_zoo/. A module
# may import anything in its own unit and anything in a lower layer; units of one layer are independent.
LAYERS: List[List[Tuple[str, ...]]] = [
    [("ms_suite.errors", "ms_suite.registry", "ms_suite.version")],
    [("ms_suite.config",)],
    [("ms_suite.runtime",)],
    [("ms_suite.checkpoint",)],
    [("ms_suite.data",)],
    [("ms_suite.models", "model_zoo")],
    [("ms_suite.engine",)],
    [("ms_suite.profiling",), ("ms_suite.deploy",), ("ms_suite.launch",)],
    [("ms_suite.compression",), ("ms_suite.tune",)],
    [("ms_suite.api", "ms_suite")],  # the package root (itself only) re-exports the zoo and the version
    [("ms_suite.cli",)],
    [("ms_suite.__main__",)],
]


def module_files() -> Dict[str, pathlib.Path]:
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


MODULES = module_files()


def placement(module: str) -> Tuple[int, Tuple[str, ...]]:
    """(layer index, unit) of ``module``: the unit whose longest prefix is ``module`` or a package holding it."""
    matches = [(len(prefix), index, unit) for index, layer in enumerate(LAYERS) for unit in layer
               for prefix in unit if module == prefix or prefix != "ms_suite" and module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS"
    _, index, unit = max(matches)
    return index, unit


def rank(module: str) -> int:
    return placement(module)[0]


def resolve(module: str, node: ast.AST) -> Iterator[Tuple[str, Optional[str]]]:
    """(imported module, imported name or None) for each target of an import statement."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, None
        return
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    for alias in node.names:
        submodule = f"{target}.{alias.name}"
        yield (submodule, None) if submodule in MODULES else (target, alias.name)


def suite_imports() -> List[Tuple[str, str, Optional[str], int]]:
    """(importer, imported module, imported name, line) for every import of the suite's own modules."""
    found = []
    for module, path in sorted(MODULES.items()):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target, name in resolve(module, node):
                    if target.split(".")[0] in PACKAGES:
                        found.append((module, target, name, node.lineno))
    return found


IMPORTS = suite_imports()


def test_every_module_is_in_a_layer():
    for module in MODULES:
        rank(module)


def test_imports_only_run_down_the_layers():
    upward = []
    for importer, target, _, line in IMPORTS:
        if target not in MODULES and target.rpartition(".")[0] not in MODULES:
            upward.append(f"{importer}:{line} imports {target}, which does not exist")
            continue
        (low, unit), (high, own) = placement(target), placement(importer)
        if unit != own and low >= high:
            upward.append(f"{importer}:{line} imports {target} ({unit[0]} is not below {own[0]})")
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    graph: Dict[str, Set[str]] = {module: set() for module in MODULES}
    for importer, target, _, _ in IMPORTS:
        if target in MODULES and target != importer:
            graph[importer].add(target)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One cycle of ``graph`` as a path that returns to its start, or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == 1:
                return path[path.index(child):] + [child]
            if child not in state and (found := visit(child)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_private_names_cross_modules():
    private = [f"{importer}:{line} imports {name} from {target}" for importer, target, name, line in IMPORTS
               if name and name.startswith("_") and not name.startswith("__") and target != importer]
    assert not private, "\n".join(private)


def test_the_checker_catches_an_upward_import_and_a_cycle():
    assert rank("ms_suite.config.schema") < rank("ms_suite.engine.trainer") < rank("ms_suite.cli.main")
    assert rank("model_zoo.bert.modeling") == rank("ms_suite.models.registry")
    assert placement("ms_suite.engine.callbacks.base")[1] == ("ms_suite.engine",)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
