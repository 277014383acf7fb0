"""The sans-I/O delivery core: the envelope brokers carry and each member's outbox."""

import pytest

from django_websocket.delivery import Envelope, Outbox, encode_json, pack, unpack


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize(
    "envelope",
    [
        Envelope("héllo"),
        Envelope(b"\x00\xff binary"),
        Envelope("", exclude=frozenset({"a1.1", "b2.7"})),
        Envelope("logged out", close_code=1008, session="5f3a"),
        Envelope(b""),
    ],
)
def test_an_envelope_survives_the_broker(envelope):
    assert unpack(pack(envelope)) == envelope


@pytest.mark.parametrize(
    "data", [b"", b"T\x00", b"X\x00\x00\x00\x00\x00\x00body", b"T\x00\x00\x00\x09\x00\x00ab"]
)
def test_bytes_that_are_not_an_envelope_raise_value_error(data):
    with pytest.raises(ValueError):
        unpack(data)


def test_json_is_compact_and_keeps_non_ascii():
    assert encode_json({"a": [1, "é"]}) == '{"a":[1,"é"]}'


def test_the_outbox_is_first_in_first_out():
    outbox = Outbox(4)
    for message in ["a", b"b", "c"]:
        assert outbox.put(message)
    assert len(outbox) == 3
    assert [outbox.take(), outbox.take(), outbox.take(), outbox.take()] == ["a", b"b", "c", None]


def test_a_burst_over_the_limit_is_tolerated_if_it_drains_in_time():
    clock = Clock()
    outbox = Outbox(4, grace=1.0, clock=clock)
    for n in range(20):
        assert outbox.put(str(n))
    clock.now += 0.9
    while outbox.take() is not None:
        pass
    clock.now += 5
    for n in range(20):  # over the limit again, but the clock starts anew
        assert outbox.put(str(n))


def test_a_member_that_stays_over_the_limit_for_the_grace_overflows_and_closes():
    clock = Clock()
    outbox = Outbox(4, grace=1.0, clock=clock)
    for n in range(5):
        assert outbox.put(str(n))
    clock.now += 0.5
    assert outbox.take() == "0"  # still over the limit: the clock keeps running
    assert outbox.put("5")
    clock.now += 0.5
    assert not outbox.put("6")
    assert outbox.closed
    assert len(outbox) == 0
    assert outbox.put("7")  # a closed outbox drops silently: the member is being closed
    assert outbox.take() is None


def test_the_hard_limit_waits_a_tenth_of_the_grace():
    # A writer thread may not run for a few ms (the GIL): a burst that reaches
    # the hard limit within that time is not a slow client yet.
    clock = Clock()
    outbox = Outbox(2, grace=1.0, clock=clock)
    assert outbox.hard_limit == 32
    for n in range(100):
        assert outbox.put(str(n))
    clock.now += 0.05
    assert outbox.put("a burst")
    clock.now += 0.1
    assert not outbox.put("one more")
    assert outbox.closed


def test_below_the_hard_limit_only_the_grace_counts():
    clock = Clock()
    outbox = Outbox(2, grace=1.0, clock=clock)
    for n in range(31):
        assert outbox.put(str(n))
    clock.now += 0.5
    assert outbox.put("31 waiting")
    assert not outbox.put("32 waiting for half a second")


def test_close_drops_what_waits():
    outbox = Outbox(4)
    outbox.put("a")
    outbox.close()
    assert outbox.take() is None
    assert outbox.closed


def test_the_report_names_the_path_and_the_setting():
    report = Outbox(8).overflow_report("/chat/lobby/")
    assert "/chat/lobby/" in report
    assert "1013" in report
    assert "WEBSOCKET_GROUP_QUEUE" in report
