"""The quick start's demo runs, and shows what it claims to show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "docs" / "demo.py"


def test_demo_session() -> None:
    result = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=60, check=True
    )
    out = result.stdout
    # The envelope went out in one write, before any reply.
    assert "C: DATA\nS: 250 2.1.0 sender ok" in out
    assert "RecipientRefused(recipient='nobody@example.net'" in out
    # The bare-LF dot line was stuffed and the message ended only at the real dot.
    assert "C: ..\nC: not the end\nC: .\n" in out
    assert "C: BDAT 17 LAST" in out
    assert out.count("MessageAccepted") == 2
    assert out.rstrip().endswith(
        "ConnectionClosed(delivery=<DeliveryStatus.NO_TRANSACTION: 'no-transaction'>)"
    )
