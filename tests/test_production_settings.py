"""Safe by default: DEBUG off unless set, no start on an empty or built-in SECRET_KEY with DEBUG off,
and `manage.py check --deploy` clean with production environment variables.

Each case runs `manage.py` in a subprocess with an environment built from scratch, so nothing the
test run itself sets (pytest-env's key, SECURE_SSL_REDIRECT=0) leaks in.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCTION_KEY = "k" * 20 + "-Zq8vN3xLr7TbW1yHc5eJm0pUa9sFd2gKo6iX4"  # 59 chars, many distinct


def manage(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "FLOWPLANE_VAR_DIR": str(tmp_path / "var")}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env={**base, **env},
        capture_output=True, text=True, timeout=120,
    )


def test_debug_is_off_unless_set(tmp_path):
    result = manage(tmp_path, "shell", "--no-imports", "-c", "from django.conf import settings; print(settings.DEBUG)",
                    SECRET_KEY=PRODUCTION_KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("key", [None, "", "   ", "insecure-development-key-change-me"],
                         ids=["unset", "empty", "blank", "built-in"])
def test_debug_off_refuses_a_missing_or_known_secret_key(tmp_path, key):
    env = {} if key is None else {"SECRET_KEY": key}
    result = manage(tmp_path, "check", **env)
    assert result.returncode != 0
    assert "SECRET_KEY is empty or the built-in development key while DEBUG is off" in result.stderr


def test_debug_on_may_use_the_development_key(tmp_path):
    assert manage(tmp_path, "check", DEBUG="1").returncode == 0


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = manage(
        tmp_path, "check", "--deploy", "--fail-level", "WARNING",
        SECRET_KEY=PRODUCTION_KEY, ALLOWED_HOSTS="flowplane.example.com",
        DATABASE_URL="postgres://flowplane@127.0.0.1:5432/flowplane",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0", CELERY_RESULT_BACKEND="redis://127.0.0.1:6379/1",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_defaults_are_the_secure_ones(tmp_path):
    code = ("from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, "
            "s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER)")
    result = manage(tmp_path, "shell", "--no-imports", "-c", code, SECRET_KEY=PRODUCTION_KEY,
                    SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True", "31536000", "('HTTP_X_FORWARDED_PROTO',", "'https')"]


@pytest.mark.parametrize("value", ["HTTP_X_FORWARDED_PROTO", ",https", "HTTP_X_FORWARDED_PROTO,"])
def test_a_malformed_proxy_header_setting_names_itself(tmp_path, value):
    result = manage(tmp_path, "check", SECRET_KEY=PRODUCTION_KEY, SECURE_PROXY_SSL_HEADER=value)
    assert result.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER" in result.stderr and "HTTP_X_FORWARDED_PROTO,https" in result.stderr


def test_a_debug_flag_that_is_not_a_boolean_is_refused(tmp_path):
    result = manage(tmp_path, "check", DEBUG="maybe")
    assert result.returncode != 0 and "DEBUG='maybe' is not a boolean" in result.stderr


@pytest.mark.parametrize("broker, cache_url, backend", [
    pytest.param(None, None, "locmem.LocMemCache", id="embedded-no-server"),
    pytest.param("redis://127.0.0.1:6379/3", None, "redis.RedisCache redis://127.0.0.1:6379/3", id="the-brokers-redis"),
    pytest.param("redis://127.0.0.1:6379/3", "redis://cache:6379/0", "redis.RedisCache redis://cache:6379/0",
                 id="its-own-cache-url"),
])
def test_the_default_cache_is_the_brokers_redis_when_there_is_one(tmp_path, broker, cache_url, backend):
    env = {k: v for k, v in {"CELERY_BROKER_URL": broker, "CACHE_URL": cache_url}.items() if v}
    code = ("from django.conf import settings as s; c = s.CACHES['default']; "
            "print(c['BACKEND'].removeprefix('django.core.cache.backends.'), c.get('LOCATION', '')) ")
    result = manage(tmp_path, "shell", "--no-imports", "-c", code, SECRET_KEY=PRODUCTION_KEY, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == backend


@pytest.mark.parametrize("rate", ["120", "0/min", "ten/min", "5/week", "5/"])
def test_a_malformed_hook_throttle_rate_names_itself(tmp_path, rate):
    result = manage(tmp_path, "check", SECRET_KEY=PRODUCTION_KEY, HOOK_THROTTLE_RATE=rate)
    assert result.returncode != 0 and f"HOOK_THROTTLE_RATE={rate!r}" in result.stderr


@pytest.mark.parametrize("value", ["1", "0", "-4", "many", "2.5"])
def test_engine_header_parts_below_two_or_not_an_integer_is_refused_naming_itself(tmp_path, value):
    result = manage(tmp_path, "check", DEBUG="1", ENGINE_HEADER_PARTS=value)
    assert result.returncode != 0
    assert f"ENGINE_HEADER_PARTS={value!r} is not an integer >= 2" in result.stderr
