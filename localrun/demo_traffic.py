"""Demo traffic for `make run`: new messages POSTed to the API at a steady rate, so that the demo
data never runs dry while you try things.

DEMO_MESSAGES_PER_MINUTE sets the rate (0: off); by default it is the sending rate, SEND_BATCH_SIZE
every SEND_INTERVAL_SECONDS, so the number waiting stays about where it began. Only `make run`
reads it: the messages come through the public API, as a client's would.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping

import requests

from messaging.settings import Settings, local_number

VARIABLE = "DEMO_MESSAGES_PER_MINUTE"
# One POST at a time from one thread: beyond this the API's answers, not the rate, set the pace.
MAX_PER_MINUTE = 6000
POST_TIMEOUT_SECONDS = 5
TEXTS = (
    "Your verification code is {code}. It expires in 10 minutes.",
    "Hi! Your order #{code} has shipped and arrives tomorrow.",
    "Your ride is arriving in 3 minutes: grey Toyota, plate 34 ABC {code}.",
    "Payment of 49.90 EUR received. Thank you!",
)


def messages_per_minute(environ: Mapping[str, str]) -> float:
    """The rate asked for, else the sending rate; raises SettingsError naming a bad value."""
    settings = Settings.from_env(environ)
    sending = settings.send_batch_size * 60 / settings.send_interval_seconds
    return local_number(environ, VARIABLE, sending, float, low=0, high=MAX_PER_MINUTE)


class Pace:
    """When the next message is due: one every 60/rate seconds from the start, whatever each POST
    takes; a POST that hangs for longer than that earns no burst of the ones missed meanwhile."""

    def __init__(self, per_minute: float, start: float) -> None:
        self._interval = 60.0 / per_minute
        self._next_at = start

    def wait_seconds(self, now: float) -> float:
        return max(0.0, self._next_at - now)

    def sent(self, now: float) -> None:
        late = now - self._next_at
        self._next_at = now + self._interval if late > self._interval else self._next_at + self._interval


class DemoTraffic:
    """Calls `post` at the rate until `wait` (threading.Event.wait in a run) says stop."""

    def __init__(
        self,
        per_minute: float,
        post: Callable[[], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool],
    ) -> None:
        self._per_minute = per_minute
        self._post = post
        self._clock = clock
        self._wait = wait

    def run(self) -> None:
        if self._per_minute <= 0:
            return
        pace = Pace(self._per_minute, self._clock())
        while not self._wait(pace.wait_seconds(self._clock())):
            self._post()
            pace.sent(self._clock())


def start(api: str, token: str, per_minute: float, say: Callable[[str], None]) -> Callable[[], None]:
    """Start the traffic in a thread; the function returned stops it, a POST in flight first finished."""
    stop = threading.Event()
    poster = _Poster(api, token, say)
    traffic = DemoTraffic(per_minute, poster.post, wait=stop.wait)
    thread = threading.Thread(target=traffic.run, name="demo-traffic", daemon=True)
    thread.start()

    def stop_it() -> None:
        stop.set()
        thread.join(POST_TIMEOUT_SECONDS + 1)

    return stop_it


class _Poster:
    """One message POSTed per call; says so once when the API refuses or does not answer, and once when it is back."""

    def __init__(self, api: str, token: str, say: Callable[[str], None]) -> None:
        self._url = f"{api}/messaging/messages"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._say = say
        self._failing = False

    def post(self) -> None:
        body = {
            "recipient_phone_number": f"+90532{random.randrange(10**7):07d}",
            "content": random.choice(TEXTS).format(code=random.randrange(100000, 1000000)),
        }
        try:
            answer = requests.post(self._url, json=body, headers=self._headers, timeout=POST_TIMEOUT_SECONDS)
            problem = None if answer.status_code == 201 else f"HTTP {answer.status_code} {answer.text[:200]}"
        except requests.RequestException as error:
            problem = type(error).__name__
        if problem and not self._failing:
            self._say(f"demo traffic: POST {self._url} failed ({problem}); trying on at the same rate")
        elif self._failing and not problem:
            self._say("demo traffic: the API takes messages again")
        self._failing = problem is not None
