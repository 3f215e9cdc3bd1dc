"""Events are validated values."""

from __future__ import annotations

import dataclasses

import pytest

from smtp_proto import (
    ChunkAccepted,
    ConnectionClosed,
    DeliveryStatus,
    EhloFeatures,
    EnhancedStatusCode,
    Event,
    Greeting,
    MessageAccepted,
    MessageOutcome,
    Read,
    ReadyForData,
    RecipientAccepted,
    RecipientRefused,
    RecipientResult,
    Reply,
    SenderAccepted,
    TransactionResult,
    Write,
)
from smtp_proto._events import fast_constructor


def reply(code: int = 250, *lines: str) -> Reply:
    return Reply(code=code, lines=lines or ("ok",), raw=b"")


@pytest.mark.parametrize("code", [199, 600, 0, -250, "250", 250.0, True])
def test_reply_code_is_validated(code: object) -> None:
    with pytest.raises(ValueError, match="reply code"):
        Reply(code=code, lines=("x",))  # type: ignore[arg-type]


@pytest.mark.parametrize("lines", [(), ["x"], "x"])
def test_reply_lines_are_a_non_empty_tuple(lines: object) -> None:
    with pytest.raises(ValueError, match=r"^a reply has a non-empty tuple of lines$"):
        Reply(code=250, lines=lines)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "flags"),
    [
        (250, (True, False, False, False, False)),
        (354, (False, True, False, False, False)),
        (451, (False, False, True, False, True)),
        (550, (False, False, False, True, True)),
    ],
)
def test_reply_classes(code: int, flags: tuple[bool, ...]) -> None:
    r = reply(code)
    assert (
        r.is_positive,
        r.is_intermediate,
        r.is_transient,
        r.is_permanent,
        r.is_negative,
    ) == flags


def test_reply_text_and_repr() -> None:
    r = Reply(code=250, lines=("one", "two"), raw=b"250-one\r\n250 two\r\n")
    assert r.text == "one\ntwo"
    assert "raw" not in repr(r)
    assert repr(r).startswith("Reply(code=250")


def test_events_are_frozen_and_keyword_only() -> None:
    r = reply()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.code = 550  # type: ignore[misc]
    with pytest.raises(TypeError):
        Greeting(r)  # type: ignore[call-arg]
    assert Greeting(reply=r).accepted
    assert not Greeting(reply=reply(554)).accepted


@pytest.mark.parametrize(
    ("status_class", "subject", "detail"),
    [(3, 0, 0), (1, 0, 0), (2, 1000, 0), (2, 0, -1), (2, "1", 0)],
)
def test_enhanced_status_code_is_validated(status_class: int, subject: int, detail: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        EnhancedStatusCode(status_class=status_class, subject=subject, detail=detail)


def test_enhanced_status_code_bounds_are_inclusive() -> None:
    code = EnhancedStatusCode(status_class=5, subject=999, detail=999)
    assert str(code) == "5.999.999"
    assert str(EnhancedStatusCode(status_class=2, subject=0, detail=0)) == "2.0.0"


def test_ehlo_features_are_frozen_even_if_the_dict_is_not() -> None:
    extensions = {"PIPELINING": (), "SIZE": ("100",)}
    features = EhloFeatures(reply=reply(), esmtp=True, server_name="mx", extensions=extensions)
    extensions["CHUNKING"] = ()
    assert not features.chunking
    with pytest.raises(TypeError):
        features.extensions["X"] = ()  # type: ignore[index]
    assert features.supports("pipelining")
    assert features.max_message_size == 100


@pytest.mark.parametrize(
    ("params", "size"),
    [
        ((), None),
        (("0",), None),
        (("12345",), 12345),
        (("1" * 20,), int("1" * 20)),
        (("1" * 21,), None),
        (("-5",), None),
        (("١٢",), None),  # non-ASCII digits are not a size
        (("10", "20"), None),
    ],
)
def test_max_message_size(params: tuple[str, ...], size: int | None) -> None:
    features = EhloFeatures(
        reply=reply(), esmtp=True, server_name="mx", extensions={"SIZE": params}
    )
    assert features.max_message_size == size


def test_ehlo_features_without_size() -> None:
    features = EhloFeatures(reply=reply(), esmtp=False, server_name="mx")
    assert features.max_message_size is None
    assert features.auth_mechanisms == frozenset()


def test_connection_closed_defaults_to_no_transaction() -> None:
    assert ConnectionClosed().delivery is DeliveryStatus.NO_TRANSACTION


# -- the engine's fast constructor --------------------------------------------------------

_OK = Reply(code=250, lines=("ok",), raw=b"250 ok\r\n")


@pytest.mark.parametrize(
    ("cls", "values"),
    [
        (SenderAccepted, ("a@example.com", _OK)),
        (RecipientAccepted, ("b@example.com", _OK)),
        (RecipientRefused, ("c@example.com", Reply(code=550, lines=("no",)))),
        (ReadyForData, (Reply(code=354, lines=("go",)),)),
        (ChunkAccepted, (_OK,)),
        (MessageAccepted, (_OK, None)),
        (MessageAccepted, (_OK, "d@example.com")),
        (RecipientResult, ("e@example.com", _OK, Reply(code=251, lines=("later",)))),
        (Write, (b"MAIL FROM:<a@example.com>\r\n",)),
        (Read, (300.0, False)),
        (
            TransactionResult,
            (MessageOutcome.ACCEPTED, _OK, (RecipientResult(address="f@example.com"),), _OK),
        ),
    ],
)
def test_fast_constructor_makes_what_the_dataclass_makes(
    cls: type[object], values: tuple[object, ...]
) -> None:
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    made = fast_constructor(cls)(*values)
    assert type(made) is cls
    assert made == cls(**dict(zip(names, values, strict=True)))
    assert [getattr(made, name) for name in names] == list(values)
    # Still frozen: only the constructor itself sets the slots.
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, names[0], values[0])


@pytest.mark.parametrize("cls", [Reply, EnhancedStatusCode, EhloFeatures])
def test_fast_constructor_refuses_classes_that_check_their_values(cls: type[object]) -> None:
    # Their __post_init__ would be skipped.
    with pytest.raises(TypeError, match=f"^{cls.__name__} cannot be made without its __init__$"):
        fast_constructor(cls)


def test_fast_constructor_refuses_a_class_without_slots() -> None:
    @dataclasses.dataclass(frozen=True)
    class Plain:
        value: int

    with pytest.raises(TypeError, match=r"^Plain cannot be made without its __init__$"):
        fast_constructor(Plain)


def test_fast_constructor_refuses_more_than_four_fields() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Five:
        a: int
        b: int
        c: int
        d: int
        e: int

    with pytest.raises(TypeError, match=r"^Five has 5 fields; up to 4 are supported$"):
        fast_constructor(Five)


def test_event_classes_are_leaves() -> None:
    # The engine tells events apart by exact type (cheaper than isinstance), which is only
    # the same thing while no event class has subclasses.
    kinds = Event.__subclasses__()
    assert len(kinds) == len(set(kinds)) > 15
    for kind in kinds:
        assert kind.__subclasses__() == [], kind
