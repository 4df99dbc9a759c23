"""Imports run one way (DESIGN.md): the contracts in pyproject.toml, checked by import-linter.

`make lint` runs the same check; here it also fails the suite, and a planted violation shows
that the check can fail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300
    )


def test_the_apps_keep_the_import_contracts() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "0 broken" in done.stdout


def test_a_review_module_importing_publishing_breaks_the_contract(tmp_path: Path) -> None:
    # given: a copy of the apps where review imports publishing
    for name in ["contentstudio", "generation", "review", "publishing", "finetune"]:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "review" / "diff.py").open("a") as f:
        f.write("\nimport publishing.models  # noqa\n")
    # when / then
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout
