"""The package's floors: a module imports only from its own unit or from units on floors below (the README draws
the same table). Lazy imports inside functions count too."""

import ast
from pathlib import Path

import vla_course

# unit -> floor (a unit is a top-level module or subpackage of vla_course). viz/ is apart: it imports nothing.
FLOORS = {
    "constants": 0, "errors": 0,
    "sim": 1, "heads": 1, "viz": 1,
    "models": 2, "cameras": 2, "eval_vqa": 2,
    "checkpoints": 3, "robot": 3,
    "control": 4, "policies": 4, "recap": 4,
    "data": 5,
    "training": 6,
    "train": 7, "recipes": 7,  # the registry and its recipes (train.discover imports them: one floor)
    "cli": 8,
}
SAME_FLOOR = {frozenset({"train", "recipes"}), frozenset({"policies", "recap"})}  # --policy recap: its prompt
PACKAGE = Path(vla_course.__file__).parent


def _imports(path: Path) -> set[str]:
    mod = path.relative_to(PACKAGE.parent).with_suffix("").parts
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package upwards
                pkg = mod[:-1] if path.name != "__init__.py" else mod[:-1]
                base = list(pkg[: len(pkg) - node.level + 1])
                out.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {n for n in out if n.startswith("vla_course.")}


def _unit(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_every_unit_has_a_floor():
    units = {_unit(p) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE}
    assert units <= set(FLOORS), sorted(units - set(FLOORS))


def test_modules_import_only_from_lower_floors():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        unit = _unit(path) if path.parent != PACKAGE or path.name != "__init__.py" else None
        if unit is None:
            continue
        for name in _imports(path):
            target = name.split(".")[1]
            if target == unit or frozenset({unit, target}) in SAME_FLOOR:
                continue
            if FLOORS[target] >= FLOORS[unit]:
                bad.append(f"{path.relative_to(PACKAGE)} (floor {FLOORS[unit]}) imports {name} (floor {FLOORS[target]})")
    assert not bad, "\n".join(bad)


def test_viz_draws_what_it_is_given():
    for path in (PACKAGE / "viz").rglob("*.py"):
        assert not _imports(path), path
