"""The two protocol errors."""

from __future__ import annotations

import pytest

from smtp_proto import LocalProtocolError, ProtocolError, RemoteProtocolError


def test_the_base_class_is_never_raised_itself() -> None:
    with pytest.raises(
        TypeError, match=r"^raise LocalProtocolError or RemoteProtocolError instead$"
    ):
        ProtocolError("which side?")


@pytest.mark.parametrize("error", [LocalProtocolError, RemoteProtocolError])
def test_errors_carry_their_message(error: type[ProtocolError]) -> None:
    exc = error("bad thing")
    assert isinstance(exc, ProtocolError)
    assert exc.message == "bad thing"
    assert str(exc) == "bad thing"
