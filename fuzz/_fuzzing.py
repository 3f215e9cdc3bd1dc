"""What every harness does when run as a script: hand its ``check`` to atheris."""

from __future__ import annotations

import sys
from collections.abc import Callable


def fuzz(check: Callable[[bytes], None]) -> None:  # pragma: no cover - needs atheris
    """Fuzz *check* with atheris, taking libFuzzer's options from the command line."""
    import atheris  # noqa: PLC0415 - only the fuzzing run needs it

    # Coverage feedback needs the engine's bytecode instrumented; it is already imported.
    atheris.instrument_all()
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()
