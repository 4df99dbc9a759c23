"""Settings come from the environment; a bad value stops the start and names the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG"}
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('ok')"],
        env={**clean, "DJANGO_SETTINGS_MODULE": "contentstudio.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DATABASE_URL": "mysql://root@localhost/x"}, "DATABASE_URL"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"CONTENTSTUDIO_TORCH_THREADS": "two"}, "CONTENTSTUDIO_TORCH_THREADS"),
        (
            {"CONTENTSTUDIO_GENERATION_WIDE_SESSION": "wide"},
            "CONTENTSTUDIO_GENERATION_WIDE_SESSION",
        ),
        ({"CONTENTSTUDIO_SAVE_INTERVAL": "-1"}, "CONTENTSTUDIO_SAVE_INTERVAL"),
        ({"TOXICITY_LANGUAGES": "english,fr"}, "TOXICITY_LANGUAGES"),
        ({"EMBEDDING_MODEL_LANGUAGES": "en;zh"}, "EMBEDDING_MODEL_LANGUAGES"),
    ],
)
def test_a_bad_setting_fails_the_start_naming_it(env: dict[str, str], named: str) -> None:
    result = start(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr


def test_no_environment_gives_the_embedded_defaults(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s;"
            "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.CELERY_EMBEDDED,"
            " s.CHANNEL_LAYERS['default']['BACKEND'])",
        ],
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "contentstudio.settings",
            "CONTENTSTUDIO_DATA_DIR": str(tmp_path),
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.sqlite3",
        "memory://localhost/",
        "True",
        "channels.layers.InMemoryChannelLayer",
    ]


def test_redis_and_postgres_switch_everything(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s;"
            "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.CELERY_EMBEDDED,"
            " s.CHANNEL_LAYERS['default']['BACKEND'], s.CACHES['default']['BACKEND'])",
        ],
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "contentstudio.settings",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
            "REDIS_URL": "redis://127.0.0.1:6379/3",
            "SECRET_KEY": "a-real-secret-for-this-test",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "redis://127.0.0.1:6379/3",
        "False",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
        "django.core.cache.backends.redis.RedisCache",
    ]


def test_without_a_secret_key_only_the_local_embedded_default_starts() -> None:
    # a deployment (real services, or reachable under a public name) refuses, in one line
    for env in [
        {"REDIS_URL": "redis://127.0.0.1:6379/3"},
        {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test"},
        {"ALLOWED_HOSTS": "studio.example.org"},
    ]:
        refused = start(env)
        assert refused.returncode != 0, env
        errors = [ln for ln in refused.stderr.splitlines() if ln.startswith("django.core.exc")]
        assert len(errors) == 1 and "SECRET_KEY is not set" in errors[0], env
    # with a key it starts (the local embedded default starts without one: the test above)
    assert start({"ALLOWED_HOSTS": "studio.example.org", "SECRET_KEY": "x" * 50}).returncode == 0
