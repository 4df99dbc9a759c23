"""review/checks/ is pure: it imports no Django (ORM, settings), no policy and nothing else of the
studio but itself, and reads no environment; it is given its configuration, which settings.py
reads (a bad value stops the start, naming it). Review's modules stay a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.test_settings import start

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ROOT / "review" / "checks"
# Packages of the studio: a check may import only review.checks among them.
STUDIO = ("contentstudio", "generation", "review", "publishing", "finetune")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, *, is_package: bool) -> set[str]:
    """Every module ``source`` imports (relative imports resolved against ``module``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                keep = len(package) - node.level + (1 if is_package else 0)
                base = ".".join([*package[:keep], *([base] if base else [])])
            found.add(base)
            # "from review import holds" imports review.holds
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def environment_reads(source: str) -> list[str]:
    """``os.environ`` / ``os.getenv`` uses, and ``environ`` / ``getenv`` imported from os."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in {"environ", "getenv", "environb", "putenv"}
        ):
            found.append(f"os.{node.attr} (line {node.lineno})")
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"from os import {a.name}" for a in node.names if "env" in a.name]
    return found


def _in_checks(name: str) -> bool:
    return name == "review.checks" or name.startswith("review.checks.")


def forbidden(modules: set[str]) -> list[str]:
    """The imports a pure check may not make."""
    bad = []
    for name in sorted(modules):
        top = name.split(".")[0]
        if top == "django":
            bad.append(name)  # the ORM, settings, anything of Django
        # "review" alone comes from "from review.checks import x"; only the checks may be used.
        elif top in STUDIO and name != "review" and not _in_checks(name):
            bad.append(name)
    return bad


def test_the_purity_rule_catches_an_orm_a_settings_a_policy_and_an_environment_read() -> None:
    # given: a module that breaks every rule, placed in the checks package
    source = (
        "import os\n"
        "from django.db import models\n"
        "from django.conf import settings\n"
        "from review import holds\n"
        "from review.services.policies import policy_get\n"
        "from ...models import Policy\n"
        "from ..text import sentences\n"
        "LIMIT = os.environ.get('X')\n"
    )
    # when
    modules = imported_modules(source, "review.checks.semantic.check", is_package=False)
    # then: every one of them is named, and the check's own imports are not
    assert forbidden(modules) == [
        "django.conf",
        "django.conf.settings",
        "django.db",
        "django.db.models",
        "review.holds",
        "review.models",
        "review.models.Policy",
        "review.services.policies",
        "review.services.policies.policy_get",
    ]
    assert "review.checks.text.sentences" in modules
    assert environment_reads(source) == ["os.environ (line 8)"]


@pytest.mark.parametrize(
    "path", sorted(CHECKS.rglob("*.py")), ids=lambda p: str(p.relative_to(CHECKS))
)
def test_review_checks_imports_no_django_no_policy_and_reads_no_environment(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    modules = imported_modules(source, module_name(path), is_package=path.name == "__init__.py")
    assert forbidden(modules) == []
    assert environment_reads(source) == []


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CONTENTSTUDIO_EMBED_THREADS": "0"}, "CONTENTSTUDIO_EMBED_THREADS"),
        ({"CONTENTSTUDIO_EMBED_ONNX": "maybe"}, "CONTENTSTUDIO_EMBED_ONNX"),
        ({"CONTENTSTUDIO_EMBED_SPIN": "fast"}, "CONTENTSTUDIO_EMBED_SPIN"),
        ({"CONTENTSTUDIO_EMBED_PRECISION": "int4"}, "CONTENTSTUDIO_EMBED_PRECISION"),
        ({"CONTENTSTUDIO_EMBED_GRAPH": "optimised"}, "CONTENTSTUDIO_EMBED_GRAPH"),
    ],
)
def test_a_bad_encoder_setting_fails_the_start_naming_it(env: dict[str, str], named: str) -> None:
    result = start(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and named in result.stderr


def test_the_encoder_is_given_the_settings(settings: object) -> None:
    from review.checks.semantic import EncoderConfig
    from review.services.embedding import encoder_config

    # given: settings other than the defaults
    settings.EMBED_THREADS = 3  # type: ignore[attr-defined]
    settings.EMBED_SPIN = True  # type: ignore[attr-defined]
    settings.EMBED_PRECISION = "int8"  # type: ignore[attr-defined]
    settings.EMBED_ONNX_CACHE = Path("/tmp/contentstudio-test-onnx")  # type: ignore[attr-defined]
    # when / then: the services layer passes them in, the rest as the checks' defaults
    assert encoder_config() == EncoderConfig(
        threads=3, spin=True, precision="int8", cache_dir=Path("/tmp/contentstudio-test-onnx")
    )


def test_no_review_module_is_over_700_lines_or_over_500_without_a_reason() -> None:
    too_long = []
    for path in sorted((ROOT / "review").rglob("*.py")):
        relative = path.relative_to(ROOT / "review")
        if relative.parts[0] in {"migrations", "publishing"} or "migrations" in relative.parts:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        reason = bool(lines) and lines[0].startswith("# Over 500 lines:")
        if len(lines) > 700 or (len(lines) > 520 and not reason):
            too_long.append(f"{relative}: {len(lines)}")
    assert too_long == []
