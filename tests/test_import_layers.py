"""pasa_det's imports run one way: a module imports only from its own layer or the ones
below it, and modules of one layer never import each other in a cycle."""

import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pasa_det")

# Bottom to top; a part may import from its own rank and below. The package root
# (pasa_det/__init__.py) only registers the parts and is left out.
RANKS = {
    "layers": 0,
    "detectron2_versions": 0,
    "config": 1,
    "modeling": 2,
    "data": 3,
    "evaluation": 3,
    "checkpoint": 3,
    "engine": 4,
    "export": 4,
    "analysis": 5,
}


def part(module: str) -> str:
    return module.split(".")[1]


def imports_of(path: str, module: str):
    """Every pasa_det module `path` imports, at its top or inside functions."""
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("pasa_det."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("pasa_det."):
                yield target
            elif target == "pasa_det":
                yield from (f"pasa_det.{a.name}" for a in node.names)


def modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                relative = os.path.relpath(path, os.path.dirname(PACKAGE))[: -len(".py")]
                module = relative.replace(os.sep, ".").removesuffix(".__init__")
                if module != "pasa_det":
                    yield path, module


def test_every_part_has_a_rank():
    parts = {part(m) for _, m in modules()} - {"_C"}
    assert parts == set(RANKS)


def test_no_import_runs_up_the_layers():
    upward = [
        f"{module} imports {target}"
        for path, module in modules()
        for target in imports_of(path, module)
        if part(target) in RANKS and RANKS[part(target)] > RANKS[part(module)]
    ]
    assert upward == []


def test_parts_of_one_rank_import_each_other_one_way_only():
    edges = {
        (part(module), part(target))
        for path, module in modules()
        for target in imports_of(path, module)
        if part(target) in RANKS and part(target) != part(module)
    }
    assert [(a, b) for a, b in edges if (b, a) in edges] == []
