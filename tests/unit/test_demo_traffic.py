"""The demo traffic of `make run`: how many messages a minute, and when each goes, on a fake clock."""

from __future__ import annotations

import pytest

from localrun.demo_traffic import DemoTraffic, Pace, messages_per_minute
from messaging.errors import SettingsError


class FakeClock:
    """Time that moves only when the traffic waits or a POST takes time; stops the run at `until`."""

    def __init__(self, until: float) -> None:
        self.now = 1000.0
        self.until = self.now + until

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        """What threading.Event.wait answers: True once stopped (here: the time is up)."""
        self.now += seconds
        return self.now >= self.until


def run_for(seconds: float, per_minute: float, post_seconds: float = 0.0, stall: tuple[float, float] | None = None):
    """Send for `seconds` of fake time; the times each POST started. `stall`: (at, for) a POST that hangs."""
    clock = FakeClock(seconds)
    started = []

    def post() -> None:
        started.append(clock.now - 1000.0)
        hang = stall[1] if stall and len(started) == 1 + int(stall[0] * per_minute / 60) else 0.0
        clock.now += post_seconds + hang

    DemoTraffic(per_minute, post, clock=clock, wait=clock.wait).run()
    return started


def test_the_default_rate_is_the_sending_rate_per_minute():
    assert messages_per_minute({}) == 1  # 2 messages every 120 s
    assert messages_per_minute({"SEND_INTERVAL_SECONDS": "5"}) == 24
    assert messages_per_minute({"SEND_INTERVAL_SECONDS": "2", "SEND_BATCH_SIZE": "10"}) == 300


def test_the_rate_can_be_set_or_switched_off():
    assert messages_per_minute({"DEMO_MESSAGES_PER_MINUTE": "90", "SEND_INTERVAL_SECONDS": "5"}) == 90
    assert messages_per_minute({"DEMO_MESSAGES_PER_MINUTE": "0.5"}) == 0.5
    assert messages_per_minute({"DEMO_MESSAGES_PER_MINUTE": "0"}) == 0


@pytest.mark.parametrize("bad", ["-1", "fast", "1000000"])
def test_a_bad_rate_names_the_variable(bad):
    with pytest.raises(SettingsError, match="DEMO_MESSAGES_PER_MINUTE"):
        messages_per_minute({"DEMO_MESSAGES_PER_MINUTE": bad})


def test_messages_go_evenly_spaced_at_the_rate():
    assert run_for(60, per_minute=10) == pytest.approx([0, 6, 12, 18, 24, 30, 36, 42, 48, 54])


def test_the_time_a_post_takes_does_not_lower_the_rate():
    assert len(run_for(600, per_minute=30, post_seconds=1.5)) == 300


def test_a_post_that_hangs_earns_no_burst_afterwards():
    started = run_for(120, per_minute=60, stall=(10, 30))

    after = [t for t in started if t > 10]
    assert after[0] == pytest.approx(41)  # the hung POST ended at 40: the next a second later, not thirty at once
    assert all(b - a == pytest.approx(1) for a, b in zip(after, after[1:]))


def test_a_rate_of_zero_sends_nothing():
    assert run_for(60, per_minute=0) == []


def test_the_pace_says_how_long_until_the_next_message():
    pace = Pace(per_minute=12, start=100.0)
    assert pace.wait_seconds(100.0) == 0
    pace.sent(100.2)
    assert pace.wait_seconds(100.2) == pytest.approx(4.8)
