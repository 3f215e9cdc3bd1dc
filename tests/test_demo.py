"""The quick start's demo runs, and shows what it claims to show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "docs" / "demo.py"


def test_demo_sends_through_every_transport() -> None:
    result = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120, check=True
    )
    out = result.stdout
    for transport in ("sync", "asyncio", "trio"):
        assert f"smtp_proto.transports.{transport})" in out
    # STARTTLS, then AUTH with the password never shown.
    assert out.count("C: STARTTLS") == 3
    assert out.count("C: AUTH PLAIN [redacted]") == 3
    assert "correct horse" not in out + result.stderr
    # One refused recipient does not stop the others.
    assert out.count("nobody@example.net     refused") == 3
    assert out.count("carol@example.net      delivered") == 3
    assert out.count("outcome: accepted") == 3
    assert "The server received 3 messages." in out
    assert "Traceback" not in result.stderr
