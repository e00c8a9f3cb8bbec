"""No import runs upward between the package's layers (docs/architecture.md).

Every `import` and `from ... import` in ser_lightning/, at module level, inside functions and
under TYPE_CHECKING alike, is read with `ast` and mapped to the layer of the module it names;
an import of a higher layer fails the test, naming the file, the line and the module.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ser_lightning"
# Top to bottom; a module may import its own layer and the ones below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("train", "eval", "predict", "export", "serve", "report", "cross_corpus", "baseline", "__main__"),
    ("serving",),
    ("reporting", "inference", "baselines"),
    (
        "module",
        "module_settings",
        "optimisation",
        "nonfinite_loss",
        "checkpoint_writing",
        "checkpoint_calibration",
        "resume",
        "preemption",
    ),
    ("data",),
    ("model", "checkpoint", "checkpoint_vetting", "checkpoint_encoder", "checkpoint_errors"),
    ("models", "features", "augment", "demo_corpus"),
    (
        "labels",
        "dimensions",
        "metrics",
        "decoding",
        "audio_settings",
        "calibration",
        "conformal",
        "utils",
        "__init__",
    ),
)
RANK = {name: len(LAYERS) - depth for depth, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """The ser_lightning modules `path` imports, with their line numbers."""
    current = module_name(path).split(".")
    package = current if path.name == "__init__.py" else current[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found += [(base, node.lineno)]
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return [(name, line) for name, line in found if name.split(".")[0] == "ser_lightning"]


def layer_of(module: str) -> int | None:
    """The rank of a module's top-level part under ser_lightning (None: not a module of ours)."""
    parts = module.split(".")
    if len(parts) == 1:
        return RANK["__init__"]
    top = parts[1]
    is_module = (PACKAGE / top).is_dir() or (PACKAGE / f"{top}.py").is_file()
    return RANK.get(top) if is_module else None


def test_every_module_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    tops -= {"__pycache__"}
    assert tops - set(RANK) == set(), "add the new module to a layer in LAYERS"


def test_no_import_runs_upward():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = layer_of(module_name(path))
        for imported, line in imported_modules(path):
            theirs = layer_of(imported)
            if theirs is not None and own is not None and theirs > own:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}")
    assert upward == [], "\n".join(upward)
