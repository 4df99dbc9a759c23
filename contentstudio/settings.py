# Over 500 lines: Django reads one settings module; each block validates its own variables.
"""ContentStudio settings: one file, read from the environment.

With no environment at all the studio runs embedded: SQLite, the in-memory channel layer and a
Celery worker inside the serving process on the in-memory transport. ``DATABASE_URL`` switches the
database to PostgreSQL, ``REDIS_URL`` switches the Celery broker, the channel layer and the cache
to Redis (workers then run as separate processes). A bad value stops the start with a message that
names the setting.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _env_bool(name: str, default: bool) -> bool:
    raw = _env(name)
    if not raw:
        return default
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use 1/0, true/false, yes/no.")


def _env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = _env(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below its minimum of {minimum}.")
    return value


def _env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = _env(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below its minimum of {minimum}.")
    return value


DEBUG = _env_bool("DEBUG", False)
SECRET_KEY = _env("SECRET_KEY")
# Without SECRET_KEY the studio only starts where a known key harms no one: in DEBUG, or as the
# local embedded default (checked at the end of this file, once the services are known).
_DEVELOPMENT_KEY = "contentstudio-insecure-development-key-set-SECRET_KEY-in-production"

ALLOWED_HOSTS = [h.strip() for h in _env("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in _env("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

# Where the studio keeps its files: the SQLite database, converted models, test fixtures.
DATA_DIR = Path(_env("CONTENTSTUDIO_DATA_DIR") or BASE_DIR / "var").resolve()
MODEL_CACHE_DIR = Path(_env("CONTENTSTUDIO_MODEL_CACHE") or DATA_DIR / "models").resolve()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "contentstudio",
    "generation",
    "review",
    "publishing",
    "finetune",
]
# Each app's websocket routes (contentstudio.routing collects them; the core imports no app).
WEBSOCKET_ROUTING_MODULES = ["generation.routing", "review.routing", "finetune.routing"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "contentstudio.middleware.DomainErrorMiddleware",
]

ROOT_URLCONF = "contentstudio.urls"
ASGI_APPLICATION = "contentstudio.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # A banner on every page while a queue has no worker.
                "contentstudio.liveness.context",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = _env("DATABASE_URL")
if DATABASE_URL:
    import dj_database_url

    try:
        _db = dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    except Exception as exc:  # dj_database_url raises plain ValueErrors with terse messages
        raise ImproperlyConfigured(f"DATABASE_URL could not be parsed: {exc}") from None
    if _db["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            f"DATABASE_URL must be a postgres:// URL (got engine {_db['ENGINE']})."
        )
    DATABASES = {"default": _db}
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _env("SQLITE_PATH") or str(DATA_DIR / "contentstudio.sqlite3"),
            # The worker thread, the server and the stream share this file: WAL lets readers
            # proceed during a write, IMMEDIATE transactions avoid deadlocking upgrades, and the
            # timeout waits out a concurrent writer instead of failing with "database is locked".
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not :memory:, so the live-server and worker threads of tests share it.
            "TEST": {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker, channel layer, cache ---------------------------------------------
REDIS_URL = _env("REDIS_URL")
if REDIS_URL:
    _parsed = urlparse(REDIS_URL)
    if _parsed.scheme not in {"redis", "rediss"} or not _parsed.hostname:
        raise ImproperlyConfigured(
            f"REDIS_URL={REDIS_URL!r} must look like redis://host:6379/0 (or rediss://)."
        )

# The embedded studio runs its Celery worker inside the serving process (a thread), so a request
# returns at once and the job runs asynchronously without any service.
CELERY_EMBEDDED = not REDIS_URL
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "generation.tasks.*": {"queue": "generate"},
    "review.tasks.*": {"queue": "review"},
    # Webhook deliveries wait on other people's servers: their own queue, so a slow receiver
    # never holds back the checks of new drafts. The publishing tasks kept the names they had
    # inside review/ (publishing/tasks.py), so queued messages still resolve.
    "review.publishing.tasks.*": {"queue": "publish"},
    "publishing.tasks.*": {"queue": "publish"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A generation job may run for minutes; the broker must not hand it to another worker meanwhile.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, float] = {"visibility_timeout": 3600}
if CELERY_EMBEDDED:
    # Kombu's in-memory transport polls (its default of 1 s added 0.5-0.7 s before every job,
    # 10 ms still 5 ms on average): this one wakes an idle worker when a message is put, so the
    # interval is only the longest wait (see contentstudio/memory_broker.py).
    CELERY_BROKER_TRANSPORT = "contentstudio.memory_broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS["polling_interval"] = 1.0
# Several studios (or test runs) may share one Redis: a key prefix keeps their queues apart.
if _env("CONTENTSTUDIO_BROKER_PREFIX"):
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = _env("CONTENTSTUDIO_BROKER_PREFIX")
CELERY_WORKER_REDIRECT_STDOUTS = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Started by the ASGI application when embedded; tests start their own worker thread.
EMBEDDED_WORKER_AUTOSTART = _env_bool("CONTENTSTUDIO_EMBEDDED_WORKER", CELERY_EMBEDDED)
# One pool per queue (embedded worker threads, `make worker` processes; contentstudio/workers.py):
# threads for checks (a check beside an import) and for deliveries (mostly waiting on receivers).
REVIEW_CONCURRENCY = _env_int("CONTENTSTUDIO_REVIEW_CONCURRENCY", 2, minimum=1)
PUBLISH_CONCURRENCY = _env_int("CONTENTSTUDIO_PUBLISH_CONCURRENCY", 4, minimum=1)
# An embedded worker that stops on an error starts again after this many seconds, doubled while
# it keeps failing (at most 60 s).
EMBEDDED_WORKER_RESTART_DELAY = _env_float("CONTENTSTUDIO_WORKER_RESTART_DELAY", 1.0)
# Worker processes (on Redis) write a heartbeat row this often; every page warns when a queue
# has had no live worker for WORKER_STALE_AFTER (contentstudio/liveness.py).
WORKER_HEARTBEAT_INTERVAL = _env_float("CONTENTSTUDIO_WORKER_HEARTBEAT", 10.0, minimum=0.1)
WORKER_STALE_AFTER = _env_float("CONTENTSTUDIO_WORKER_STALE_AFTER", 45.0, minimum=0.3)

if REDIS_URL:
    # The pub/sub layer: group sends are fire-and-forget publishes (MODELS.md: about 5x the
    # throughput of the list-based core layer at generation pace).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "contentstudio"},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "contentstudio",
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Generation -----------------------------------------------------------------------------
# Threads torch may use in this process. 0 = all cores. The worker is the only heavy user.
TORCH_THREADS = _env_int("CONTENTSTUDIO_TORCH_THREADS", 0, minimum=0)
GENERATION_MAX_CANDIDATES = 8
# Generation jobs one worker runs at the same time (threads sharing each loaded model): a job
# never waits for another to finish; beyond this many, jobs queue in order.
GENERATION_CONCURRENCY = _env_int("CONTENTSTUDIO_GENERATION_CONCURRENCY", 2, minimum=1)
# ONNX with GENERATION_MERGE_JOBS off: load each model a second time with every core
# (TORCH_THREADS, else all), for a job that finds no other job running; others take the session
# with cores // slots threads. Only where cores > cores // slots; costs one more copy of the
# weights in memory.
GENERATION_WIDE_SESSION = _env_bool("CONTENTSTUDIO_GENERATION_WIDE_SESSION", True)
# ONNX on CPU: every job on a model steps in one batch on every core (continuous batching: a
# job's rows join between two steps and leave when its candidates end). Off: each job steps
# its own batch, on the wide or narrow session above.
GENERATION_MERGE_JOBS = _env_bool("CONTENTSTUDIO_GENERATION_MERGE_JOBS", True)
# The paraphrase pair classifier (review/checks/semantic/pairs.py) decides paraphrase holds
# instead of the two shares (which stay floors), aligning at its own cosine. Off: on the test
# split (issue 20) it cut same-genre false flags (0.05 -> 0.0125) but recall fell (0.57 ->
# 0.50), and it lets pass a close paraphrase of three sentences inside a six-sentence draft
# (probability 0.97 under its 0.997 threshold); docs/review.md.
PARAPHRASE_PAIR_CLASSIFIER = _env_bool("CONTENTSTUDIO_PARAPHRASE_CLASSIFIER", False)
# ONNX on CPU, the every-core session (the shared batch's, or the wide one): its pool threads
# spin-wait between the parts of a forward pass instead of sleeping. For a worker machine of its
# own: on a quiet 2-core host the passes took 12-17% less (one row 15.2 -> 12.6 ms, eight rows
# 35.2 -> 30.3 ms); beside two busy processes they took 10-70% more, so it is off by default.
GENERATION_ONNX_SPIN = _env_bool("CONTENTSTUDIO_GENERATION_ONNX_SPIN", False)
# Per-host choice (generation/tuning.py): `manage.py studio_tune` measures job merging and
# spinning (and the embedding graph and precision) on this host and records the fastest that
# writes the same outputs under DATA_DIR/tuning/; the runtime applies that record over the
# settings above unless CONTENTSTUDIO_TUNING=0. A worker that finds nothing recorded for its
# host runs a quick measurement at start (in a background thread) unless
# CONTENTSTUDIO_TUNE_AT_START=0.
TUNING = _env_bool("CONTENTSTUDIO_TUNING", True)
TUNE_AT_START = _env_bool("CONTENTSTUDIO_TUNE_AT_START", True)
# Coalescing of streamed tokens into websocket frames (see generation/stream.py).
STREAM_TOKENS_PER_FRAME = _env_int("CONTENTSTUDIO_STREAM_TOKENS_PER_FRAME", 8, minimum=1)
STREAM_MIN_FRAME_INTERVAL = _env_float("CONTENTSTUDIO_STREAM_MIN_INTERVAL", 0.05)
# A slow model still shows progress this often; at 13 tokens/s (SmolLM2 on 2 CPU cores) 0.4 s
# is about 5 tokens a frame.
STREAM_MAX_FRAME_DELAY = _env_float("CONTENTSTUDIO_STREAM_MAX_DELAY", 0.4)
# Partial text is saved this often, so a worker crash loses at most this much text.
GENERATION_SAVE_INTERVAL = _env_float("CONTENTSTUDIO_SAVE_INTERVAL", 2.0, minimum=0.1)
# How often the worker looks for a cancel request while generating.
GENERATION_CANCEL_POLL = _env_float("CONTENTSTUDIO_CANCEL_POLL", 0.25, minimum=0.01)
# A timer thread of the worker writes a running job's heartbeat this often (also while the job
# waits for the engine or a model load); one silent for STALE_AFTER died with its worker.
GENERATION_HEARTBEAT_INTERVAL = _env_float("CONTENTSTUDIO_HEARTBEAT_INTERVAL", 5.0, minimum=0.1)
GENERATION_STALE_AFTER = _env_float("CONTENTSTUDIO_STALE_AFTER", 20.0, minimum=0.3)
if GENERATION_STALE_AFTER < 3 * GENERATION_HEARTBEAT_INTERVAL:
    raise ImproperlyConfigured(
        "CONTENTSTUDIO_STALE_AFTER must be at least 3 x CONTENTSTUDIO_HEARTBEAT_INTERVAL, or a "
        "healthy job that misses one beat would be failed."
    )
# A queued job not claimed this long after its message was sent gets its message again.
GENERATION_REQUEUE_AFTER = _env_float("CONTENTSTUDIO_REQUEUE_AFTER", 300.0, minimum=1.0)

# --- Periodic sweeps (Celery beat; see contentstudio/periodic.py) ---------------------------
SWEEP_INTERVAL = _env_float("CONTENTSTUDIO_SWEEP_INTERVAL", 5.0, minimum=0.5)
# A draft still "generated" this long after it was written lost its on-commit start (its worker
# died right after the commit): the sweep starts its checks.
CHECKS_START_GRACE = _env_float("CONTENTSTUDIO_CHECKS_START_GRACE", 10.0, minimum=0.0)
# A claimed check run whose heartbeat is this old died with its worker: another worker redoes it.
CHECKS_STALE_AFTER = _env_float("CONTENTSTUDIO_CHECKS_STALE_AFTER", 20.0, minimum=0.3)
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    # Both sweeps run on queue "review": the generate worker may be busy for minutes with the
    # very job whose worker died elsewhere.
    "jobs-sweep": {
        "task": "generation.tasks.jobs_sweep",
        "schedule": SWEEP_INTERVAL,
        "options": {"queue": "review", "expires": SWEEP_INTERVAL},
    },
    "checks-sweep": {
        "task": "review.tasks.checks_sweep",
        "schedule": SWEEP_INTERVAL,
        "options": {"queue": "review", "expires": SWEEP_INTERVAL},
    },
    # Archive imports whose worker died (heartbeat stopped) or whose message was lost.
    "imports-sweep": {
        "task": "review.tasks.imports_sweep",
        "schedule": SWEEP_INTERVAL,
        "options": {"queue": "review", "expires": SWEEP_INTERVAL},
    },
    # An embedding chain whose worker died with no message left behind (its database lease
    # expired) is picked up again, whatever the workers are called.
    "embedding-sweep": {
        "task": "review.tasks.passages_embed_sweep",
        "schedule": 60.0,
        "options": {"queue": "review", "expires": 60.0},
    },
    # The semantic index: fold a large delta into a new shared segment (built beside the
    # live one, then swapped).
    "semantic-compact-sweep": {
        "task": "review.tasks.semantic_compact_sweep",
        "schedule": 300.0,
        "options": {"queue": "review", "expires": 300.0},
    },
    # Fine-tuning runs (the finetune app): fail dead ones, resend lost messages. The task keeps
    # the name it had under generation/, so a schedule already stored still resolves.
    "finetune-sweep": {
        "task": "generation.finetune.tasks.runs_sweep",
        "schedule": SWEEP_INTERVAL,
        "options": {"queue": "review", "expires": SWEEP_INTERVAL},
    },
}
# Beat runs in the serving process of the embedded studio (with its workers).
EMBEDDED_BEAT_AUTOSTART = _env_bool("CONTENTSTUDIO_EMBEDDED_BEAT", CELERY_EMBEDDED)

# --- Review checks --------------------------------------------------------------------------
# Toxicity: a Detoxify model name (needs the network once), or a local checkpoint + config dir.
# With neither, a checkpoint built by `make setup` in the model cache is used when present;
# otherwise the check reports "not run" and holds every draft for a person.
TOXICITY_MODEL = _env("TOXICITY_MODEL")
TOXICITY_CHECKPOINT = _env("TOXICITY_CHECKPOINT")
TOXICITY_CONFIG_DIR = _env("TOXICITY_CONFIG_DIR")
if TOXICITY_CHECKPOINT and not TOXICITY_CONFIG_DIR:
    raise ImproperlyConfigured("TOXICITY_CHECKPOINT needs TOXICITY_CONFIG_DIR as well.")
# Sentence embeddings for the semantic check; empty = all-MiniLM-L6-v2 from its package.
EMBEDDING_MODEL_PATH = _env("EMBEDDING_MODEL_PATH")


def _languages(name: str) -> tuple[str, ...] | None:
    """A model's languages as its admin declares them: "en,fr,es", "*" (any); empty: from the
    model itself (review.services.languages.check_languages)."""
    value = _env(name).strip()
    if not value or value == "*":
        return None if not value else ("*",)
    codes = tuple(c.strip().lower() for c in value.split(",") if c.strip())
    bad = [c for c in codes if not re.fullmatch(r"[a-z]{2}", c)]
    if bad or not codes:
        raise ImproperlyConfigured(
            f"{name}={value!r}: give ISO 639-1 codes separated by commas (en,zh), or *."
        )
    return codes


# The languages the toxicity model and the sentence model read. Empty: Detoxify's own models
# are known (multilingual: en, fr, es, it, pt, tr, ru; others: en), a checkpoint is taken as
# English, a sentence model as its model card says (English when it says nothing).
TOXICITY_LANGUAGES = _languages("TOXICITY_LANGUAGES")
EMBEDDING_MODEL_LANGUAGES = _languages("EMBEDDING_MODEL_LANGUAGES")
CHECKS_DEVICE = _env("CONTENTSTUDIO_CHECKS_DEVICE", "cpu")
# How the sentence encoder runs on CPU (review.checks.semantic.config.EncoderConfig; the
# measurements behind the defaults are in docs/review.md): through ONNX Runtime (off: torch),
# with this many intra-op threads, sleeping rather than spinning between ops, the float graph as
# exported (int8 and the fused graph are opt-in), cached in this folder.
EMBED_ONNX = _env_bool("CONTENTSTUDIO_EMBED_ONNX", True)
EMBED_THREADS = _env_int("CONTENTSTUDIO_EMBED_THREADS", 2, minimum=1)
EMBED_SPIN = _env_bool("CONTENTSTUDIO_EMBED_SPIN", False)
EMBED_PRECISION = _env("CONTENTSTUDIO_EMBED_PRECISION") or "float"
EMBED_GRAPH = _env("CONTENTSTUDIO_EMBED_GRAPH") or "exported"
if EMBED_PRECISION not in {"float", "int8"}:
    raise ImproperlyConfigured(
        f"CONTENTSTUDIO_EMBED_PRECISION={EMBED_PRECISION!r}: use float or int8."
    )
if EMBED_GRAPH not in {"exported", "fused"}:
    raise ImproperlyConfigured(f"CONTENTSTUDIO_EMBED_GRAPH={EMBED_GRAPH!r}: use exported or fused.")
EMBED_ONNX_CACHE = Path(
    _env("CONTENTSTUDIO_ONNX_CACHE") or Path(tempfile.gettempdir()) / "contentstudio-onnx"
)
# Archive embedding: passages per batch (one short task each, so checks interleave) and how
# long a batch's database lease lasts before another worker may take over a silent chain.
try:
    EMBED_BATCH = int(_env("CONTENTSTUDIO_EMBED_BATCH", "128"))
    EMBED_LEASE_S = float(_env("CONTENTSTUDIO_EMBED_LEASE_S", "120"))
except ValueError as _exc:
    raise ImproperlyConfigured(
        f"CONTENTSTUDIO_EMBED_BATCH / CONTENTSTUDIO_EMBED_LEASE_S must be numbers: {_exc}"
    ) from None
if EMBED_BATCH < 1 or not 0 < EMBED_LEASE_S < 86400:
    raise ImproperlyConfigured(
        "CONTENTSTUDIO_EMBED_BATCH must be >= 1 and CONTENTSTUDIO_EMBED_LEASE_S > 0."
    )
# The semantic index's shared segments (memory-mapped by every worker of a host: put it on a
# volume they share) and how many sentences the in-process delta may reach before the periodic
# compaction folds it into a new segment.
INDEX_DIR = Path(_env("CONTENTSTUDIO_INDEX_DIR") or DATA_DIR / "indexes").resolve()
SEMANTIC_DELTA_MAX = _env_int("CONTENTSTUDIO_SEMANTIC_DELTA_MAX", 5000, minimum=1)
# From how many sentences a base segment gets an IVF index (built in the background, beside the
# vectors) to pick its search shortlist; below it the exact scan is as fast. And the threads its
# build may use.
SEMANTIC_ANN_MIN_ROWS = _env_int("CONTENTSTUDIO_SEMANTIC_ANN_MIN_ROWS", 50_000, minimum=0)
SEMANTIC_ANN_THREADS = _env_int("CONTENTSTUDIO_SEMANTIC_ANN_THREADS", 2, minimum=1)
# New passages a check hashes into the lexical index itself while an import is being indexed
# (the embedding chain hashes the rest between its batches).
LEXICAL_CHECK_BUDGET = _env_int("CONTENTSTUDIO_LEXICAL_CHECK_BUDGET", 1000, minimum=1)
if CHECKS_DEVICE not in {"cpu", "cuda"}:
    raise ImproperlyConfigured(f"CONTENTSTUDIO_CHECKS_DEVICE={CHECKS_DEVICE!r}: use cpu or cuda.")
ARCHIVE_UPLOAD_MAX_BYTES = _env_int("ARCHIVE_UPLOAD_MAX_MB", 200, minimum=1) * 2**20
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 2**20
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 2**20
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "/media-not-served/"

# --- Editorial workflow -------------------------------------------------------------------
# An editor's soft lock on a draft lasts this long unless the open editor renews it.
EDIT_LOCK_SECONDS = _env_int("CONTENTSTUDIO_EDIT_LOCK_SECONDS", 120, minimum=10)

# --- Publishing -------------------------------------------------------------------------------
# Seconds to connect to / wait for a publishing system's answer before the attempt counts as
# failed (and is retried with backoff).
PUBLISHING_CONNECT_TIMEOUT = _env_float("CONTENTSTUDIO_WEBHOOK_CONNECT_TIMEOUT", 5.0, minimum=0.1)
PUBLISHING_READ_TIMEOUT = _env_float("CONTENTSTUDIO_WEBHOOK_READ_TIMEOUT", 15.0, minimum=0.1)
# Retry delays in seconds after each failed attempt (exponential backoff by default, about 24
# hours in all), then the delivery is marked failed (still listed, "retry now" sends it again).
# CONTENTSTUDIO_DELIVERY_RETRY_DELAYS="10,30,60,..." replaces the schedule (never decreasing).
# A success sends the destination's waiting backlog at once, whatever its schedule said.
_retry_raw = _env("CONTENTSTUDIO_DELIVERY_RETRY_DELAYS")
try:
    PUBLISHING_RETRY_DELAYS = (
        [float(x) for x in _retry_raw.split(",") if x.strip()]
        if _retry_raw
        else [10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 28800]
    )
except ValueError:
    raise ImproperlyConfigured(
        f"CONTENTSTUDIO_DELIVERY_RETRY_DELAYS={_retry_raw!r}: seconds, comma-separated."
    ) from None
if not PUBLISHING_RETRY_DELAYS or any(
    d <= 0 or d > 7 * 86400 or d < prev
    for prev, d in zip([0.0, *PUBLISHING_RETRY_DELAYS], PUBLISHING_RETRY_DELAYS, strict=False)
):
    raise ImproperlyConfigured(
        "CONTENTSTUDIO_DELIVERY_RETRY_DELAYS: at least one delay, each above 0 and at most a "
        "week, never smaller than the one before."
    )
# How long a flush holds a destination (renewed while it sends); a killed worker's lease
# expires after this and another flush takes over.
PUBLISHING_DESTINATION_LEASE_S = _env_float("CONTENTSTUDIO_DESTINATION_LEASE_S", 120.0, minimum=5.0)
# Destinations may not point at loopback, link-local, private or other reserved addresses
# (checked when one is made and on every request, redirects included, after resolving the
# name), except the host names listed here (comma-separated, e.g. an intranet CMS).
DESTINATION_ALLOW_HOSTS = [
    h.strip().lower().rstrip(".")
    for h in _env("CONTENTSTUDIO_DESTINATION_ALLOW_HOSTS").split(",")
    if h.strip()
]
PUBLISHING_SWEEP_INTERVAL = _env_float("CONTENTSTUDIO_PUBLISHING_SWEEP_INTERVAL", 15.0, minimum=1.0)
CELERY_BEAT_SCHEDULE.update(
    {
        # Scheduled publications whose time has come. On "review": the publish worker may be
        # waiting on a slow receiver. (Task names as publishing/tasks.py declares them: the
        # names from before the app left review/.)
        "publishing-scheduled": {
            "task": "review.publishing.tasks.publications_due",
            "schedule": PUBLISHING_SWEEP_INTERVAL,
            "options": {"queue": "review", "expires": PUBLISHING_SWEEP_INTERVAL},
        },
        # Deliveries whose retry time has come (a failed attempt also schedules its retry; this
        # catches the ones a restart of the in-memory broker forgot).
        "publishing-deliveries": {
            "task": "review.publishing.tasks.deliveries_due",
            "schedule": PUBLISHING_SWEEP_INTERVAL,
            "options": {"queue": "publish", "expires": PUBLISHING_SWEEP_INTERVAL},
        },
    }
)

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = _env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the page's JavaScript reads it for API calls
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "contentstudio.tokens.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "contentstudio.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ContentStudio API",
    "DESCRIPTION": "Generate, review and publish drafts.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The interactive docs page serves Swagger UI from this installation (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": _env("LOG_LEVEL", "INFO")},
    "loggers": {
        "celery": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "transformers": {"level": "ERROR"},
    },
}


# --- The secret key -------------------------------------------------------------------------
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
LOCAL_EMBEDDED = not DATABASE_URL and not REDIS_URL and set(ALLOWED_HOSTS) <= _LOOPBACK_HOSTS
if not SECRET_KEY:
    if not (DEBUG or LOCAL_EMBEDDED):
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: outside DEBUG the studio runs without one only as the local "
            "embedded default (no DATABASE_URL or REDIS_URL, ALLOWED_HOSTS on localhost); set "
            "SECRET_KEY to a long random value."
        )
    SECRET_KEY = _DEVELOPMENT_KEY
