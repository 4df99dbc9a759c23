"""Prepare a fresh studio: the default model (converted once), a demo project and its people.

Idempotent: run it as often as you like (``make run`` does, every time).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from contentstudio.models import Project, Role
from contentstudio.services import membership_set, project_create
from generation import defaults, services
from generation.backends.gguf import convert_packaged_gguf
from generation.models import ModelSource

DEMO_USERS = [("admin", Role.ADMIN), ("editor", Role.EDITOR), ("reviewer", Role.REVIEWER)]


class Command(BaseCommand):
    help = "Prepare the default model and a demo project with an admin, an editor and a reviewer."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--skip-model", action="store_true", help="Do not convert the model.")
        parser.add_argument("--skip-archive", action="store_true", help="Do not import an archive.")
        parser.add_argument(
            "--full-archive",
            action="store_true",
            help="Import every State of the Union address (not only those since 2016).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        model = defaults.ensure_default_model()
        if not options["skip_model"] and model.source_kind == ModelSource.PACKAGE_GGUF:
            convert_packaged_gguf(
                model.source,
                settings.MODEL_CACHE_DIR,
                progress=lambda message: self.stdout.write(message),
            )
        if not options["skip_model"] and model.backend == "onnx":
            # Beside the GGUF conversion: the default CPU backend runs an ONNX copy, built once,
            # its precision chosen by measured perplexity (generation.backends.convert).
            from generation.model_runtime import model_convert_onnx

            model = model_convert_onnx(
                model_id=model.pk, progress=lambda message: self.stdout.write(message)
            )
            conversion = model.onnx_conversion
            self.stdout.write(
                f"ONNX model ready: {conversion.get('precision')}, perplexity ratio "
                f"{conversion.get('perplexity_ratio')} against fp32 ({model.onnx_dir})"
            )
        credentials = self._demo_people()
        project = self._demo_project(credentials)
        self._after_project(project, options)
        self.stdout.write(self.style.SUCCESS("\nDemo project 'Newsroom demo' is ready:"))
        for username, role in DEMO_USERS:
            self.stdout.write(
                f"  {role:<9} username: {username:<9} password: {credentials[username]}"
            )
        self.stdout.write(f"  (kept in {self._credentials_path()}; change them in the admin)\n")

    def _after_project(self, project: Project, options: dict[str, Any]) -> None:
        """Hook for later set-up steps (the archive import lives in the review app)."""
        try:
            from review.setup import demo_setup
        except ImportError:
            return
        demo_setup(
            project=project,
            stdout=self.stdout,
            skip_archive=options["skip_archive"],
            full_archive=options.get("full_archive", False),
        )

    def _credentials_path(self) -> Path:
        # Wherever CONTENTSTUDIO_DATA_DIR puts the data (var/ only by default), as an absolute
        # path, so the message is true from any working directory.
        return (Path(settings.DATA_DIR) / "demo_credentials.json").resolve()

    def _demo_people(self) -> dict[str, str]:
        path = self._credentials_path()
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        User = get_user_model()
        for username, role in DEMO_USERS:
            user = User.objects.filter(username=username).first()
            if user is None or username not in stored or not user.check_password(stored[username]):
                password = stored.get(username) or secrets.token_urlsafe(9)
                if user is None:
                    user = User(username=username, email=f"{username}@example.org")
                user.set_password(password)
                user.is_staff = role == Role.ADMIN
                user.is_superuser = role == Role.ADMIN
                user.save()
                stored[username] = password
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2))
        os.chmod(path, 0o600)
        return stored

    @transaction.atomic
    def _demo_project(self, credentials: dict[str, str]) -> Project:
        User = get_user_model()
        project = Project.objects.filter(slug="demo").first()
        admin = User.objects.get(username="admin")
        if project is None:
            project = project_create(
                name="Newsroom demo",
                slug="demo",
                description="A demo newsroom: news reports, ad copy and articles.",
                admin=admin,
            )
        for username, role in DEMO_USERS:
            membership_set(project=project, user=User.objects.get(username=username), role=role)
        existing = set(project.templates.values_list("name", flat=True))
        for spec in [*defaults.STARTER_TEMPLATES, *defaults.LOCALISED_TEMPLATES]:
            if spec["name"] not in existing:
                services.template_create(project=project, user=admin, **spec)
        return project
