"""Searching every store for a secret's plaintext, in each spelling a step might leave behind.

The spellings are computed here with the standard library, independently of
`pipelines.masking`, so a form the mask forgets is found as a leak.
"""
from __future__ import annotations

import base64
import html
import json
from urllib.parse import quote, quote_plus

from django.db import connection


def plaintext_forms(secret: str) -> dict[str, str]:
    """label -> text: the secret verbatim and in each common encoding."""
    raw = secret.encode()
    forms = {
        "verbatim": secret,
        "base64": base64.b64encode(raw).decode(),
        "base64-unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(raw).decode(),
        "base64url-unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "base64-latin1": base64.b64encode(secret.encode("latin-1", "replace")).decode(),
        "quote": quote(secret, safe=""),
        "quote-default-safe": quote(secret),
        "quote_plus": quote_plus(secret),
        "json-escaped": json.dumps(secret, ensure_ascii=False)[1:-1],
        "json-ascii-escaped": json.dumps(secret)[1:-1],
        "json-twice": json.dumps(json.dumps(secret, ensure_ascii=False)[1:-1], ensure_ascii=False)[1:-1],
        "repr": repr(secret)[1:-1],
        "bytes-repr": repr(raw)[2:-1],
        "html-escaped": html.escape(secret),
        "basic-auth": base64.b64encode(b"user:" + raw).decode(),
    }
    return forms


def leaks_in(text: str, forms: dict[str, str], where: str) -> list[str]:
    """`where: label` for each form found in `text`."""
    return [f"{where}: {label}" for label, form in forms.items() if form in text]


def database_leaks(forms: dict[str, str]) -> list[str]:
    """Every column of every table of the test database, cast to text, searched for each form."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position) FROM information_schema.columns"
            " WHERE table_schema = current_schema() GROUP BY table_name ORDER BY table_name"
        )
        tables = cursor.fetchall()
        assert any(name == "executions_executionevent" for name, _ in tables), "not the engine's database"
        found = []
        for table, columns in tables:
            quote_name = connection.ops.quote_name
            cursor.execute(f"SELECT {', '.join(f'{quote_name(c)}::text' for c in columns)} FROM {quote_name(table)}")
            for row in cursor.fetchall():
                for column, value in zip(columns, row):
                    if value is not None:
                        found += leaks_in(value, forms, f"{table}.{column}")
    return sorted(set(found))


def redis_leaks(client, forms: dict[str, str]) -> list[str]:
    """Every key and value of the test's Redis database (broker queues, results, chord counters)."""
    found = []
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key)]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "hash":
            values = [part for pair in client.hgetall(key).items() for part in pair]
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = client.zrange(key, 0, -1)
        else:
            values = []
        name = key.decode(errors="replace")
        found += leaks_in(name, forms, f"redis key {name}")
        for value in values:
            if value is not None:
                text = value.decode(errors="replace")
                found += leaks_in(text, forms, f"redis {kind} {name}")
                for body in _kombu_bodies(text):
                    found += leaks_in(body, forms, f"redis {kind} {name} (message body)")
    return sorted(set(found))


def _kombu_bodies(text: str) -> list[str]:
    """Decoded bodies of the kombu messages in a Redis value (queued: a message; unacked: a list
    holding one); kombu base64-encodes bodies, which would hide a secret at another alignment."""
    try:
        value = json.loads(text)
    except ValueError:
        return []
    messages = value if isinstance(value, list) else [value]
    out = []
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("body"), str):
            if (message.get("properties") or {}).get("body_encoding") == "base64":
                out.append(base64.b64decode(message["body"]).decode(errors="replace"))
    return out
