"""The import rules of docs/architecture.md, each checked in a fresh interpreter.

- ``bidsqc --help`` and ``--version`` import no heavy dependency, the participant level
  builds its graph without torch or ANTs, and starts its workers before importing nipype;
- the run-time app never imports the training side, at module level or lazily;
- the image-quality measures and the shared geometry import no torch.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import bidsqc

PACKAGE = Path(bidsqc.__file__).parent
HEAVY = ("torch", "torchio", "ants", "nipype", "bids")


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def runtime_modules() -> list[str]:
    """Every module of the run-time app: the package less its training sub-package."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[1] == "training" or parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_no_heavy_dependency(flag: str) -> None:
    code = (
        f"from bidsqc.cli.run import main\ntry:\n    main([{flag!r}])\nexcept SystemExit:\n    pass"
    )
    assert not top_level(modules_after(code)) & set(HEAVY)


def test_a_heavy_import_is_seen() -> None:
    """The checks here can fail: the workflows load nipype, the preprocessing ANTs and torch."""
    assert "nipype" in top_level(modules_after("import bidsqc.workflows.base"))
    assert {"ants", "torch"} <= top_level(modules_after("import bidsqc.preprocessing"))


def test_the_participant_level_builds_its_graph_without_torch_or_ants() -> None:
    """The nodes import them when they run, in the workers, while the participant level indexes
    the dataset and builds the graph."""
    loaded = top_level(modules_after("import bidsqc.cli.participant"))
    assert not loaded & {"torch", "torchio", "ants"}


def test_the_worker_server_starts_before_any_heavy_import() -> None:
    """The forkserver's imports overlap the participant level's own only if starting it
    imports nothing heavy in this process."""
    assert not top_level(modules_after("import bidsqc.cli.workers")) & set(HEAVY)


def test_the_run_time_app_never_imports_the_training_side_lazily() -> None:
    """No import statement of the run-time app, wherever it stands, names bidsqc.training."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "training":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                named = [node.module or ""]
            elif isinstance(node, ast.Import):
                named = [alias.name for alias in node.names]
            else:
                continue
            if any(
                name == "bidsqc.training" or name.startswith("bidsqc.training.") for name in named
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def test_importing_the_whole_run_time_app_loads_no_training_module() -> None:
    modules = runtime_modules()
    assert "bidsqc.cli.participant" in modules and "bidsqc.workflows.base" in modules
    loaded = modules_after("\n".join(f"import {name}" for name in modules))
    assert not {name for name in loaded if name.startswith("bidsqc.training")}


def test_the_training_side_is_seen_when_imported() -> None:
    loaded = modules_after("import bidsqc.training.cli.train")
    assert "bidsqc.training" in loaded


def test_measures_and_geometry_import_no_torch() -> None:
    measures = sorted(
        f"bidsqc.measures.{path.stem}"
        for path in (PACKAGE / "measures").glob("*.py")
        if path.stem != "__init__"
    )
    loaded = top_level(
        modules_after("\n".join(f"import {m}" for m in [*measures, "bidsqc.geometry"]))
    )
    assert "numpy" in loaded
    assert not loaded & {"torch", "torchio"}
