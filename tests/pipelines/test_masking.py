"""SecretMask: every spelling of a resolved secret becomes *** in text, nested data and keys.

The expected encodings are computed here with the standard library, independently of
`secret_forms`, so a form the mask forgets fails a test.
"""
from __future__ import annotations

import base64
import json
import threading
from urllib.parse import quote, quote_plus

import pytest

from pipelines.masking import (
    MASK,
    MAX_DEPTH,
    MIN_ENCODED_LENGTH,
    MaskDepthError,
    SecretMask,
    active_mask,
    masking_scope,
)

SECRET = 'Tök3n/+ "q"\\x&=?~'  # non-ASCII, base64 +/ chars, quotes, a backslash, URL-reserved chars


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


ENCODINGS = {
    "verbatim": SECRET,
    "base64": b64(SECRET),
    "base64-unpadded": b64(SECRET).rstrip("="),
    "base64-latin1-bytes": base64.b64encode(SECRET.encode("latin-1")).decode(),
    "base64url": b64url(SECRET),
    "base64url-unpadded": b64url(SECRET).rstrip("="),
    "quote": quote(SECRET, safe=""),
    "quote-default-safe": quote(SECRET),
    "quote-lower-hex": quote(SECRET, safe="").lower().replace("t%c3%b6k3n", "T%c3%b6k3n"),
    "quote_plus": quote_plus(SECRET),
    "json-escaped": json.dumps(SECRET, ensure_ascii=False)[1:-1],
    "json-ascii-escaped": json.dumps(SECRET)[1:-1],
    "json-upper-unicode-escape": json.dumps(SECRET)[1:-1].replace("\\u00f6", "\\u00F6"),
    "json-twice": json.dumps(json.dumps(SECRET)[1:-1])[1:-1],
    "json-twice-non-ascii-kept": json.dumps(json.dumps(SECRET, ensure_ascii=False)[1:-1], ensure_ascii=False)[1:-1],
    "repr": repr(SECRET)[1:-1],
    "bytes-repr": repr(SECRET.encode())[2:-1],
}


@pytest.mark.parametrize("encoded", ENCODINGS.values(), ids=ENCODINGS.keys())
def test_each_encoding_is_masked_inside_text(encoded):
    mask = SecretMask([SECRET])
    assert mask.text(f"before {encoded} after") == f"before {MASK} after"


@pytest.mark.parametrize("prefix", ["u:", "us:", "use:"], ids=["offset-2", "offset-0", "offset-1"])
def test_base64_of_a_longer_text_holding_the_secret_is_masked(prefix):
    # Basic auth: base64("user:" + secret); the secret starts at any byte alignment.
    for encode in (b64, b64url):
        encoded = encode(prefix + SECRET + "!tail")
        masked = SecretMask([SECRET]).text(f"Basic {encoded}")
        assert MASK in masked
        surviving = masked.replace("Basic ", "").split(MASK)
        # What survives is only the few characters shared with the prefix and tail.
        assert sum(len(part) for part in surviving) < len(encoded) // 2


def test_text_without_secrets_is_returned_unchanged():
    mask = SecretMask([SECRET])
    text = "nothing to see " * 1000
    assert mask.text(text) is text


def test_nested_values_dict_keys_and_lists_are_masked():
    mask = SecretMask([SECRET])
    value = {"a": [1, {"b": f"x{SECRET}y", SECRET: True}], "c": (b64(SECRET),), "d": None, "e": 2.5}
    assert mask.apply(value) == {"a": [1, {"b": f"x{MASK}y", MASK: True}], "c": [MASK], "d": None, "e": 2.5}


def test_two_keys_masked_to_the_same_text_both_survive():
    mask = SecretMask(["secret-one", "secret-two"])
    assert mask.apply({"secret-one": 1, "secret-two": 2}) == {"***": 1, "*** (2)": 2}
    assert mask.apply({"*** (2)": 0, "secret-one": 1, "secret-two": 2}) == {"*** (2)": 0, "***": 1, "*** (3)": 2}


def test_secret_references_are_kept_not_masked():
    mask = SecretMask(["token"])  # a value equal to part of the secret's own name
    assert mask.apply({"h": {"$secret": "api-token"}, "v": "token"}) == {"h": {"$secret": "api-token"}, "v": MASK}


def test_a_number_holding_a_numeric_secret_is_masked():
    mask = SecretMask(["98765432"])
    assert mask.apply({"n": 98765432, "m": 1, "f": 198765432.5, "b": True}) == {"n": MASK, "m": 1, "f": MASK, "b": True}


def test_overlapping_secrets_are_masked_together():
    mask = SecretMask(["abcdef-123", "123-uvwxyz"])
    assert mask.text("<abcdef-123-uvwxyz>") == f"<{MASK}>"
    assert mask.text("abcdef-123abcdef-123") == MASK


def test_a_secret_inside_another_is_masked_with_the_longer_one():
    mask = SecretMask(["hunter2-long-password", "long-pass"])
    assert mask.text("p=hunter2-long-password; q=long-pass") == f"p={MASK}; q={MASK}"


@pytest.mark.parametrize("short", ["a", "ab", "abcde"])
def test_short_secrets_are_masked_verbatim_only(short):
    assert len(short) < MIN_ENCODED_LENGTH
    mask = SecretMask([short])
    assert mask.text(f"[{short}]") == f"[{MASK}]"
    encoded = b64(short).rstrip("=")
    if short not in encoded:
        assert mask.text(f"[{encoded}]") == f"[{encoded}]"


def test_a_secret_of_minimum_length_is_masked_in_its_encodings():
    value = "x" * (MIN_ENCODED_LENGTH - 1) + "/"
    mask = SecretMask([value])
    assert mask.text(b64(value)) == MASK
    assert mask.text(quote(value, safe="")) == MASK


def test_empty_mask_is_the_identity():
    mask = SecretMask(["", None])  # nothing worth masking
    value = {"k": ["v"]}
    assert not mask and mask.apply(value) is value


def test_repr_never_shows_values():
    assert SECRET not in repr(SecretMask([SECRET]))


def test_deep_values_are_refused_not_crashed_on():
    deep: list = []
    cursor = deep
    for _ in range(MAX_DEPTH + 5):
        cursor.append([])
        cursor = cursor[0]
    with pytest.raises(MaskDepthError):
        SecretMask([SECRET]).apply(deep)


def test_huge_text_is_masked_in_bounded_time():
    import time

    mask = SecretMask([SECRET, "another-secret-value", "zz"])
    text = ("abcdefghij" * 200_000) + SECRET
    started = time.perf_counter()
    masked = mask.text(text)
    assert masked.endswith(MASK) and SECRET not in masked
    assert time.perf_counter() - started < 5


def test_the_input_is_not_mutated():
    value = {"k": [SECRET]}
    SecretMask([SECRET]).apply(value)
    assert value == {"k": [SECRET]}


class TestScope:
    def test_the_active_mask_grows_as_secrets_are_resolved_and_ends_with_the_scope(self):
        assert not active_mask()
        with masking_scope() as scope:
            resolve = scope.recording({"tok": SECRET}.__getitem__)
            assert not active_mask()
            assert resolve("tok") == SECRET
            assert active_mask().text(SECRET) == MASK
        assert not active_mask()

    def test_another_thread_does_not_see_the_scope(self):
        seen = []
        with masking_scope() as scope:
            scope.add(SECRET)
            thread = threading.Thread(target=lambda: seen.append(bool(active_mask())))
            thread.start()
            thread.join(5)
        assert seen == [False]

    def test_nested_scopes_restore_the_outer_one(self):
        with masking_scope() as outer:
            outer.add("outer-secret")
            with masking_scope() as inner:
                inner.add("inner-secret")
                assert active_mask().text("outer-secret inner-secret") == f"outer-secret {MASK}"
            assert active_mask().text("outer-secret inner-secret") == f"{MASK} inner-secret"

    def test_a_failing_resolver_adds_nothing(self):
        with masking_scope() as scope:
            with pytest.raises(KeyError):
                scope.recording({}.__getitem__)("gone")
            assert not scope.mask


def test_forms_sharing_their_first_characters_are_each_checked_whole():
    long, other, short = "common-prefix-0123456789-A-tail", "common-prefix-0123456789-B-more", "common"
    mask = SecretMask([long, other, short])
    assert mask.text(f"1 {long} 2 {other} 3 common-prefix-0123456789-C") == f"1 {MASK} 2 {MASK} 3 {MASK}-prefix-0123456789-C"
    assert SecretMask(["abcdef", "abcdefghijklmnopqrstuvwxyz"]).text("abcdefghijklmnopQ") == f"{MASK}ghijklmnopQ"


def test_many_and_long_secrets_build_and_scan_in_bounded_time():
    import secrets as random_secrets
    import time

    values = [random_secrets.token_urlsafe(24) for _ in range(500)] + [random_secrets.token_urlsafe(48_000)]
    started = time.perf_counter()
    mask = SecretMask(values)
    text = "x" * 500_000 + values[0] + "y" * 1000 + values[-1]
    assert mask.text(text) == "x" * 500_000 + MASK + "y" * 1000 + MASK
    assert time.perf_counter() - started < 10


def test_secrets_that_are_prefixes_of_each_other_do_not_nest_the_pattern_too_deep():
    mask = SecretMask(["a" * n for n in range(1, 1500)])
    assert mask.text("b" + "a" * 3000 + "b") == f"b{MASK}b"
