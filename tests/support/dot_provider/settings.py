"""The smallest Django settings that run django-oauth-toolkit with OpenID Connect enabled.

The database (sqlite) and the signing key live in ``$DOT_DIR``, a temporary directory per run."""

from __future__ import annotations

import os
from pathlib import Path

DOT_DIR = Path(os.environ["DOT_DIR"])

SECRET_KEY = "keyturn-tests-only-not-a-secret"  # a throwaway test server's
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "tests.support.dot_provider.urls"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DOT_DIR / "db.sqlite3")}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": (DOT_DIR / "oidc.pem").read_text(),
    "SCOPES": {"openid": "OpenID Connect", "read": "Reading", "write": "Writing"},
    "DEFAULT_SCOPES": ["read"],
}
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"file": {"class": "logging.FileHandler", "filename": str(DOT_DIR / "dot.log")}},
           "root": {"handlers": ["file"], "level": "INFO"}}
