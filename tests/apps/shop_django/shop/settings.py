"""Settings of the shop project.

Everything that differs between machines comes from the environment:

- ``SHOP_DB_PATH``: the sqlite database file (default ``db.sqlite3`` next to manage.py);
- ``SHOP_BROKER_URL``: the Celery broker (default a local RabbitMQ);
- ``SHOP_RESULT_BACKEND``: the Celery result backend (default a sqlite file through SQLAlchemy);
- ``SHOP_HARDENED=1``: late acks, redelivery of tasks whose worker died, idempotent writes.
  Off by default: the shop runs on Celery's defaults until someone turns it on.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "shop-dev-only-not-a-secret")
DEBUG = os.environ.get("SHOP_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "orders",
]

MIDDLEWARE: list[str] = []
ROOT_URLCONF = "shop.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB_PATH", str(BASE_DIR / "db.sqlite3")),
        # Two pool processes write at once: wait for the lock instead of failing at once.
        "OPTIONS": {"timeout": 30},
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

SHOP_HARDENED = os.environ.get("SHOP_HARDENED", "0") == "1"

# ---- Celery (read by shop/celery.py through the CELERY_ namespace)
CELERY_BROKER_URL = os.environ.get("SHOP_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
CELERY_RESULT_BACKEND = os.environ.get(
    "SHOP_RESULT_BACKEND", f"db+sqlite:///{BASE_DIR / 'celery-results.sqlite3'}")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE

if SHOP_HARDENED:
    # Ack after the task ran, and give the message back when the process running it dies:
    # a crash mid-task then means "run it again", so every write below must be idempotent.
    CELERY_TASK_ACKS_LATE = True
    CELERY_TASK_REJECT_ON_WORKER_LOST = True
    CELERY_WORKER_PREFETCH_MULTIPLIER = 1
    # A publish returns only once the broker has the message: a broker crash right after
    # .delay() must not swallow it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
