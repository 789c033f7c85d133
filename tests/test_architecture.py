"""The import rule of ``docs/architecture.md``, read from the source with ``ast``: imports point one
way, down the layers; no module reaches into another's private names; only the backend layer
names an array library or branches on a backend's name; backends and compiled passes are found by
name in their registries (``get_backend``, ``mnist_gpu.kernels``), never by importing their
modules; no module is longer than 400 lines.

Every import counts, at the top of a module or inside a function (an import on demand is still a
dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

from mnist_gpu import backend as backend_layer

PACKAGE = REPO / "mnist_gpu"
# Bottom to top: a module imports from its own package and from those below it, never above.
# ``mnist_gpu`` itself (its ``__init__``: the public API) sits above what it re-exports.
LAYERS = ("backend", "io", "data", "model", "optim", "kernels", "training", "", "sweep", "viz",
          "bench", "serve", "cli")
# Inside ``model``, bottom to top: a module imports only those of a lower rank. The layer types
# (one module each family, on the base ``layer``) know nothing of one another or of the
# networks they make; the vocabulary of layer words and the presets sit above the network.
MODEL_RANKS = {"chunks": 0, "tutorial": 1, "stack": 2, "layers": 2, "layer": 2, "dense": 3,
               "conv": 3, "dropout": 3, "network": 4, "architecture": 5, "presets": 6,
               "saved": 6, "": 7}
# Inside ``optim``: the base, then each optimiser and the schedules, then the registries.
OPTIM_RANKS = {"base": 0, "schedules": 1, "sgd": 1, "adam": 1, "": 2}
# The backends' names, from their registry: each is its array library's name (NumPy, the host's,
# is imported everywhere), with the companions that the backend layer imports too.
BACKEND_NAMES = set(backend_layer.BACKENDS)
ARRAY_LIBRARIES = BACKEND_NAMES - {"numpy"} | {"cupyx", "array_api_compat"}
# Where a library or a backend may be named: the backend layer (the kernels find theirs by the
# backend's name, and take the library from the backend they are given).
MAY_NAME_LIBRARIES = ("backend",)
# What the rest of the package imports of the two registries: ``mnist_gpu.backend``
# (``get_backend``, by name) and ``mnist_gpu.kernels`` (``training_pass``, by the backend's
# name), with the kernels' error and the lit-pixel lists a pass's caller keeps.
REGISTRIES = {"backend": {"mnist_gpu.backend"},
              "kernels": {"mnist_gpu.kernels", "mnist_gpu.kernels.errors",
                          "mnist_gpu.kernels.lit"}}
# The backends' own classes, which only their registry makes (``Backend``, their verbs, is what
# the rest of the package annotates with).
BACKEND_CLASSES = {name for name, value in vars(backend_layer).items()
                   if isinstance(value, type) and issubclass(value, backend_layer.Backend)
                   and value is not backend_layer.Backend}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _imports(name: str, tree: ast.AST):
    """(line, module imported, names taken from it) for every import of ``name``'s source,
    relative ones resolved; ``from package import module`` counts as importing the module."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    yield node.lineno, f"{base}.{alias.name}", ()
                else:
                    yield node.lineno, base, (alias.name,)


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1] if len(parts) > 1 else "")


def _graph():
    edges = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        edges[name] = [(line, target, taken) for line, target, taken in _imports(name, tree)]
    return edges


EDGES = _graph()


def test_imports_point_down_the_layers():
    wrong = [f"{MODULES[name].relative_to(REPO)}:{line} imports {target}"
             for name, imports in EDGES.items() for line, target, _ in imports
             if target in MODULES and _layer(target) > _layer(name)]
    assert not wrong, "imports that point up (docs/architecture.md):\n" + "\n".join(wrong)


@pytest.mark.parametrize("package, ranks", [("model", MODEL_RANKS), ("optim", OPTIM_RANKS)])
def test_imports_inside_the_model_and_optim_point_down(package, ranks):
    prefix = f"mnist_gpu.{package}"
    inside = sorted(name for name in MODULES if name.startswith(prefix))
    unranked = [name for name in inside if name.removeprefix(prefix).lstrip(".") not in ranks]
    assert not unranked, f"modules without a rank in {package}: {unranked}"

    def rank(name):
        return ranks[name.removeprefix(prefix).lstrip(".")]
    wrong = [f"{name} imports {target}" for name in inside for _, target, _ in EDGES[name]
             if target in MODULES and target.startswith(prefix + ".") and target != name
             and rank(target) >= rank(name)]
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_the_cli_but_the_cli():
    wrong = [f"{name} imports {target}" for name, imports in EDGES.items()
             for _, target, _ in imports
             if target.startswith("mnist_gpu.cli") and not name.startswith("mnist_gpu.cli")]
    assert not wrong


def test_nothing_below_imports_the_server():
    # The web server (mnist_gpu/serve) is a top layer beside the CLI: only the command imports it.
    wrong = [f"{name} imports {target}" for name, imports in EDGES.items()
             for _, target, _ in imports
             if target.startswith("mnist_gpu.serve")
             and not name.startswith(("mnist_gpu.serve", "mnist_gpu.cli"))]
    assert not wrong


def test_no_import_cycle():
    internal = {name: {t for _, t, _ in imports if t in MODULES and t != name}
                for name, imports in EDGES.items()}
    state, stack = {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for target in sorted(internal[name]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("an import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"

    for name in sorted(internal):
        if name not in state:
            visit(name)


# The one function that may name Numba's private attributes (its docstring says why).
NUMBA_PRIVATE = ("mnist_gpu.kernels.numba_cache", "numba_private_api")


def _numba_private_nodes(name, tree) -> set[int]:
    """The nodes of ``NUMBA_PRIVATE``'s function, when ``tree`` is its module."""
    return {id(inner) for node in ast.walk(tree)
            if name == NUMBA_PRIVATE[0] and isinstance(node, ast.FunctionDef)
            and node.name == NUMBA_PRIVATE[1] for inner in ast.walk(node)}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_reads(tree, allowed):
    """The private names of other code that ``tree`` uses outside ``allowed``: ``x._name``, and
    ``self._name`` that the module neither assigns nor defines, and a private class attribute
    set in a class derived from an imported one (overriding its base's)."""
    own = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
           and isinstance(node.ctx, ast.Store)}
    own |= {node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and id(node) not in allowed:
            on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not on_self or node.attr not in own:
                found.append((node.lineno, node.attr))
        elif isinstance(node, ast.ClassDef) and any(
                not (isinstance(base, ast.Name) and base.id in classes) for base in node.bases):
            found += [(item.lineno, target.id) for item in node.body
                      if isinstance(item, ast.Assign) for target in item.targets
                      if isinstance(target, ast.Name) and _private(target.id)]
    return found


def test_the_kernels_read_no_private_numba_name_outside_one_function():
    wrong, seen = [], 0
    for name, path in MODULES.items():
        if name.startswith("mnist_gpu.kernels"):
            tree = ast.parse(path.read_text(), str(path))
            allowed = _numba_private_nodes(name, tree)
            seen += len(_private_reads(tree, set())) - len(_private_reads(tree, allowed))
            wrong += [f"{path.relative_to(REPO)}:{line} uses {private}"
                      for line, private in _private_reads(tree, allowed)]
    assert not wrong, "\n".join(wrong)
    assert seen, f"{'.'.join(NUMBA_PRIVATE)} names no private attribute: is it still there?"


def test_no_module_takes_another_modules_private_names():
    wrong = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        allowed = _numba_private_nodes(name, tree)
        imported = {alias.asname or alias.name.rpartition(".")[2]
                    for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in node.names}
        for line, target, taken in EDGES[name]:
            if target.startswith("mnist_gpu") and any(t.startswith("_") and not t.startswith("__")
                                                      for t in taken):
                wrong.append(f"{path.relative_to(REPO)}:{line} takes {taken} from {target}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in imported and node.attr.startswith("_")
                    and not node.attr.startswith("__") and node.value.id not in ("os", "sys")
                    and id(node) not in allowed):
                wrong.append(f"{path.relative_to(REPO)}:{node.lineno} reads "
                             f"{node.value.id}.{node.attr}")
    assert not wrong, "\n".join(wrong)


def _package(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def _names_a_library(name: str, imports) -> list[str]:
    """Where module ``name`` imports an array library, unless it is the backend layer's."""
    if _package(name) in MAY_NAME_LIBRARIES:
        return []
    return [f"{name}:{line} imports {target}" for line, target, _ in imports
            if target.split(".")[0] in ARRAY_LIBRARIES]


def _branches_on_a_backends_name(name: str, tree: ast.AST) -> list[str]:
    if _package(name) in MAY_NAME_LIBRARIES:
        return []
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                listed = isinstance(side, (ast.Tuple, ast.List, ast.Set))
                values = side.elts if listed else [side]
                if any(isinstance(v, ast.Constant) and v.value in BACKEND_NAMES for v in values):
                    wrong.append(f"{name}:{node.lineno}")
    return wrong


def _passes_the_registries(name: str, tree: ast.AST, imports) -> list[str]:
    """Where module ``name`` reaches a backend or a compiled pass other than by its name: by
    importing its module, taking its class, or making a backend of its own."""
    wrong = []
    for line, target, taken in imports:
        package = _package(target) if target.startswith("mnist_gpu.") else None
        if package not in REGISTRIES or package == _package(name):
            continue
        if target not in REGISTRIES[package]:
            wrong.append(f"{name}:{line} imports {target}")
        elif BACKEND_CLASSES.intersection(taken):
            wrong.append(f"{name}:{line} takes {sorted(BACKEND_CLASSES.intersection(taken))}"
                         " (get_backend finds a backend by its name)")
    if _package(name) != "backend":
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(base, "id", getattr(base, "attr", None)) == "Backend"
                    for base in node.bases):
                wrong.append(f"{name}:{node.lineno} defines a backend, {node.name}, outside the "
                             "backend layer")
    return wrong


def _trees():
    return {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


TREES = _trees()


def test_only_the_backend_layer_names_an_array_library():
    wrong = [w for name, imports in EDGES.items() for w in _names_a_library(name, imports)]
    assert not wrong, "\n".join(wrong)


def test_only_the_backend_layer_branches_on_a_backends_name():
    wrong = [w for name, tree in TREES.items() for w in _branches_on_a_backends_name(name, tree)]
    assert not wrong, "comparisons with a backend's name:\n" + "\n".join(wrong)


def test_backends_and_compiled_passes_are_found_by_name_in_their_registries():
    wrong = [w for name, tree in TREES.items()
             for w in _passes_the_registries(name, tree, EDGES[name])]
    assert not wrong, "\n".join(wrong)


def test_no_module_is_longer_than_400_lines():
    long = {str(path.relative_to(REPO)): n for path in MODULES.values()
            if (n := len(path.read_text().splitlines())) > 400}
    assert not long


def test_the_rule_sees_what_it_forbids(tmp_path):
    """The checks above, on sources written to break them: they cannot pass by seeing nothing."""
    source = "from ..cli import main\nfrom .runner import _private\nimport cupy\n"
    tree = ast.parse(source)
    found = list(_imports("mnist_gpu.training.example", tree))
    assert ("mnist_gpu.cli" in {t for _, t, _ in found}
            and ("_private",) in [taken for _, _, taken in found]
            and "cupy" in {t for _, t, _ in found})
    assert _layer("mnist_gpu.cli") > _layer("mnist_gpu.training.tutorial")
    assert len(EDGES) == len(MODULES) > 40
    # A library, a backend's name and a backend's or a pass's own module, outside their layers.
    source = ("import torch\nfrom ..backend import NumpyBackend, get_backend\n"
              "from ..backend.host import open_numpy\nfrom ..kernels import cpu\n"
              "from ..kernels.lit import LitPixels\n"
              "class Clock(Backend):\n    pass\n"
              "def f(backend):\n    return backend.name == 'cupy'\n")
    tree = ast.parse(source)
    name = "mnist_gpu.bench.example"
    found = list(_imports(name, tree))
    assert _names_a_library(name, found) == [f"{name}:1 imports torch"]
    assert _branches_on_a_backends_name(name, tree) == [f"{name}:9"]
    assert [w.split(" ", 1)[0] for w in _passes_the_registries(name, tree, found)] == [
        f"{name}:2", f"{name}:3", f"{name}:4", f"{name}:6"]
    # The same source inside the backend layer names what it may.
    inside = "mnist_gpu.backend.example"
    assert not _names_a_library(inside, found) and not _branches_on_a_backends_name(inside, tree)
    assert BACKEND_NAMES >= {"numpy", "cupy", "torch"} and "NumpyBackend" in BACKEND_CLASSES


@pytest.mark.parametrize("concept", ["dropout", "momentum"])
def test_a_concept_is_named_in_few_modules(concept):
    # A layer type is one class and an optimizer's setting one optimizer's: beside them only the
    # presets (data) and the layer words or the schedule that cycles it may say its name.
    naming = sorted(name for name, path in MODULES.items()
                    if concept in path.read_text().lower())
    assert len(naming) <= 3, naming
