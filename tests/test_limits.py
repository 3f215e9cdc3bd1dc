"""Limits and timeouts refuse nonsense values."""

from __future__ import annotations

import pytest

from smtp_proto import Limits, Timeouts


def test_defaults_follow_rfc_5321() -> None:
    limits = Limits()
    assert limits.max_command_line_length == 512  # section 4.5.3.1.4
    assert limits.max_commands_in_flight == 100  # section 4.5.3.1.8
    timeouts = Timeouts()
    assert (timeouts.greeting, timeouts.mail, timeouts.rcpt) == (300, 300, 300)
    assert (timeouts.data_initiation, timeouts.data_block, timeouts.data_termination) == (
        120,
        180,
        600,
    )


@pytest.mark.parametrize("value", [0, -1, 1.5, "10", True, None])
def test_limits_must_be_positive_ints(value: object) -> None:
    with pytest.raises(ValueError, match="max_reply_lines must be a positive int"):
        Limits(max_reply_lines=value)  # type: ignore[arg-type]


def test_the_smallest_limits_are_accepted() -> None:
    limits = Limits(
        max_reply_line_length=1,
        max_reply_lines=1,
        max_reply_size=1,
        max_receive_buffer=1,
        max_command_line_length=1,
        max_commands_in_flight=1,
        max_auth_rounds=1,
        max_auth_line_length=1,
    )
    assert limits.max_reply_lines == limits.max_receive_buffer == 1


def test_limits_must_nest() -> None:
    with pytest.raises(ValueError, match=r"^max_reply_line_length cannot exceed max_reply_size$"):
        Limits(max_reply_line_length=100, max_reply_size=99)
    with pytest.raises(ValueError, match=r"^max_reply_size cannot exceed max_receive_buffer$"):
        Limits(max_reply_size=100, max_reply_line_length=100, max_receive_buffer=99)
    # Equal limits nest.
    limits = Limits(max_reply_line_length=100, max_reply_size=100, max_receive_buffer=100)
    assert limits.max_reply_size == 100


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), "10", None])
def test_timeouts_must_be_positive_numbers(value: object) -> None:
    with pytest.raises(ValueError, match="greeting must be a positive number"):
        Timeouts(greeting=value)  # type: ignore[arg-type]


def test_timeouts_accept_ints_floats_and_infinity() -> None:
    assert Timeouts(mail=5, rcpt=0.5, other=float("inf")).rcpt == 0.5
