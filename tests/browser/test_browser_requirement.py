"""Without Chromium the browser tests skip, saying why, unless FLOWPLANE_REQUIRE_BROWSER is set."""
from __future__ import annotations

import pytest

from tests.browser import conftest


def test_a_missing_browser_skips_with_the_reason(monkeypatch):
    monkeypatch.delenv("FLOWPLANE_REQUIRE_BROWSER", raising=False)

    with pytest.raises(pytest.skip.Exception, match="no Chromium at /nowhere.*bin/install-browser"):
        conftest._missing("no Chromium at /nowhere")


def test_a_missing_browser_fails_when_it_is_required(monkeypatch):
    monkeypatch.setenv("FLOWPLANE_REQUIRE_BROWSER", "1")

    with pytest.raises(pytest.fail.Exception, match="no Chromium"):
        conftest._missing("no Chromium at /nowhere")


def test_install_browser_does_nothing_when_chromium_is_there():
    import subprocess
    from pathlib import Path

    if not Path("/usr/bin/chromium").exists():
        pytest.skip("no /usr/bin/chromium here: bin/install-browser would install it")
    script = Path(__file__).resolve().parents[2] / "bin" / "install-browser"

    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=30)

    assert (done.returncode, done.stdout) == (0, "")  # no apt-get: nothing printed
