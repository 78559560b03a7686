"""Finding 5: per-sender and per-address rate limits (429 with Retry-After), which never swallow a first
disclosure. The limiter is driven by a fake clock; tests/security/test_channels.py drives it over HTTP."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bot.channels.limits import RateLimiter, WebLimits, client_address, is_loopback


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_rate_then_says_how_long_to_wait():
    clock = Clock()
    limiter = RateLimiter(20, 60, clock=clock)
    assert [limiter.hit("a") for _ in range(20)] == [0.0] * 20
    assert limiter.hit("a") == pytest.approx(3.0)  # one token every 60/20 s
    assert limiter.hit("b") == 0.0  # another key has its own bucket
    clock.now += 3.0
    assert limiter.hit("a") == 0.0
    assert limiter.hit("a") > 0
    clock.now += 60
    assert [limiter.hit("a") for _ in range(20)] == [0.0] * 20  # full again after a quiet minute


def test_a_rate_of_zero_switches_the_limit_off():
    limiter = RateLimiter(0)
    assert all(limiter.hit("a") == 0.0 for _ in range(1000))


def test_the_per_address_limit_holds_across_senders():
    limits = WebLimits(per_sender=1000, per_ip=5, clock=Clock(), may_be_disclosure=lambda text: False)
    assert [limits.message(f"s{i}", "203.0.113.7", "hi") for i in range(5)] == [None] * 5
    assert limits.message("s99", "203.0.113.7", "hi") == 12  # 60 s / 5
    assert limits.message("s99", "203.0.113.8", "hi") is None  # another address


def test_a_limited_message_that_may_be_a_disclosure_is_let_through_once_per_sender_per_minute():
    clock = Clock()
    seen: list[str] = []

    def may_be_disclosure(text: str) -> bool:
        seen.append(text)
        return text.startswith("he hurts")

    limits = WebLimits(per_sender=2, per_ip=1000, clock=clock, may_be_disclosure=may_be_disclosure)
    assert limits.message("s", None, "hi") is None and limits.message("s", None, "hi") is None
    assert seen == []  # the detector only runs for messages over the limit
    assert limits.message("s", None, "what about tiktok") == 30
    assert limits.message("s", None, "he hurts me") is None  # the first disclosure is never refused
    assert limits.message("other", None, "he hurts me") is None
    assert limits.message("s", None, "he hurts me again") == 30  # a flood of them is limited
    clock.now += 61
    for _ in range(2):
        limits.message("s", None, "hi")
    assert limits.message("s", None, "he hurts me, still") is None


def test_if_the_detector_fails_a_limited_message_is_let_through(monkeypatch):
    import bot.safeguarding.detector as detector

    def broken(text, doc=None):
        raise RuntimeError("no pipeline")

    monkeypatch.setattr(detector, "assess", broken)
    limits = WebLimits(per_sender=1, per_ip=1000, clock=Clock())
    assert limits.message("s", None, "hi") is None
    assert limits.message("s", None, "anything") is None  # recall first: it may have been a disclosure


def test_the_talk_to_a_grown_up_button_counts_as_a_disclosure():
    limits = WebLimits(per_sender=1, per_ip=1000, clock=Clock())
    limits.message("pupil-x", None, "hi")
    assert limits.message("pupil-x", None, "/disclose") is None


def test_new_widget_conversations_are_limited_per_address():
    limits = WebLimits(per_sender=1, per_ip=3, clock=Clock())
    assert [limits.new_conversation("198.51.100.1") for _ in range(4)] == [None, None, None, 20]
    assert limits.new_conversation(None) is None


@pytest.mark.parametrize(
    ("remote_addr", "ip", "expected"),
    [
        ("", "198.51.100.4", "198.51.100.4"),  # a direct client
        ("", "127.0.0.1", None),  # this machine, or a local proxy Sanic was not told to trust
        ("", "::1", None),
        ("198.51.100.5", "127.0.0.1", "198.51.100.5"),  # the proxy's forwarded address, when trusted
    ],
)
def test_client_address(remote_addr, ip, expected):
    assert client_address(SimpleNamespace(remote_addr=remote_addr, ip=ip)) == expected


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("example.org", False), ("", False),
     (None, False)],
)  # fmt: skip
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
