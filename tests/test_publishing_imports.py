"""Imports run one way: publishing uses review, review never imports publishing (not at module
level, not inside a function, not by a dotted string), so review works with publishing absent.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _names_publishing(name: str | None) -> bool:
    return name is not None and (name == "publishing" or name.startswith("publishing."))


def test_no_review_module_mentions_the_publishing_package() -> None:
    offenders = []
    for path in sorted((ROOT / "review").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names if _names_publishing(a.name)]
            elif isinstance(node, ast.ImportFrom):
                found = [node.module] if node.level == 0 and _names_publishing(node.module) else []
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                # importlib.import_module("publishing.x"), apps.get_model("publishing.X")...
                found = [node.value] if _names_publishing(node.value) else []
            else:
                found = []
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}: {name}" for name in found]
    assert offenders == []


def test_every_review_module_imports_with_publishing_not_installed(tmp_path: Path) -> None:
    # A fresh interpreter with publishing left out of INSTALLED_APPS imports every review
    # module; publishing must never be loaded.
    script = """
import importlib, pkgutil, sys
import django
from django.conf import settings
from contentstudio import settings as project_settings

project_settings.INSTALLED_APPS = [
    app for app in project_settings.INSTALLED_APPS if app.split(".")[0] != "publishing"
]
django.setup()
import review

names = [m.name for m in pkgutil.walk_packages(review.__path__, "review.")]
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m == "publishing" or m.startswith("publishing."))
print(len(names), loaded)
assert not loaded, loaded
"""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "contentstudio.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "x"),
        "SQLITE_PATH": str(tmp_path / "unused.sqlite3"),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    count, loaded = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) > 20 and loaded == "[]"
