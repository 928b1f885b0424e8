"""Alerts reach people: a webhook receiver on loopback counts what arrives (once when raised, once
when cleared, retried with backoff, refused without retry, rate-limited), tmux shows the line and
never runs what a log wrote into it, and `watch`, `alert-test` and the console send them for real."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cpconsole.core.httpclient import http_client
from cpconsole.core.notify import Notification, Notifier
from cpconsole.core.notify.tmux import display, tmux_argv
from cpconsole.core.notify.webhook import WebhookChannel
from cpconsole.core.profile.schema import Notify, Webhook
from cpconsole.core.session import Session
from cpconsole.core.telemetry.alerts import Alert
from cpconsole.ui.app import ConsoleApp

from .loopback import Block
from .simcluster import demo_text
from .sshd import free_port
from .test_orchestrate import cpconsole
from .test_proxy import serving
from .test_ui import session_over, wait_for

TOKEN = "hook-token-of-the-team"


class Receiver:
    """A real webhook receiver: answers each POST with the next scripted status (then 200), keeps
    the bodies it took (2xx) and the headers of every try."""

    def __init__(self, host: str, statuses: tuple[int, ...] = ()) -> None:
        self.host, self.port = host, free_port(host)
        self.url = f"http://{host}:{self.port}/hook?secret=in-the-query"
        self.statuses = list(statuses)
        self.tries: list[dict[str, str]] = []
        self.bodies: list[dict[str, Any]] = []
        self._arrived = threading.Condition()
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        body = await request.json()
        status = self.statuses.pop(0) if self.statuses else 200
        with self._arrived:
            self.tries.append(dict(request.headers))
            if status < 300:
                self.bodies.append(body)
            self._arrived.notify_all()
        return Response(status_code=status)

    def wait(self, found: Any, timeout: float = 60) -> list[dict[str, Any]]:
        """Until `found(bodies)` holds (a hang guard, not a speed bound)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: found(self.bodies), timeout):
                raise AssertionError(f"never arrived; bodies: {self.bodies}")
            return list(self.bodies)


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    statuses = getattr(request, "param", ())
    yield from (pair[0] for pair in serving(Receiver(Block.fresh().ip(51), statuses)))


def hook(receiver: Receiver, **settings: Any) -> Webhook:
    return Webhook(url=receiver.url, backoff_s=0.01, **settings)


KV_FAILED = Alert(
    "log:decode-0:kv_transfer_failed",
    "warning",
    "decode-0",
    "a KV transfer between prefill and decode failed",
    kind="kv_transfer_failed",
    place="decode-a",
    hint="raise ASCEND_TRANSFER_TIMEOUT",
    first_seen=1_700_000_000.0,
)


async def test_raised_and_cleared_each_reach_the_webhook_once_with_cause_place_and_token(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CPCONSOLE_TEST_HOOK_TOKEN", TOKEN)
    settings = Notify(tmux=False, webhooks=(hook(receiver, token_env="CPCONSOLE_TEST_HOOK_TOKEN"),))
    async with http_client(10) as http:
        notifier = Notifier("demo", settings, http, sender="alice@jump")
        notifier.offer([KV_FAILED], [])
        notifier.offer([], [KV_FAILED])
        bodies = await asyncio.to_thread(receiver.wait, lambda b: len(b) == 2)
        await notifier.close()
    assert [b["state"] for b in bodies] == ["firing", "resolved"]  # in order
    firing = bodies[0]
    assert firing["text"] == (
        "[demo] WARNING decode-0: a KV transfer between prefill and decode failed at decode-a; "
        "raise ASCEND_TRANSFER_TIMEOUT"
    )
    assert (firing["kind"], firing["place"], firing["sender"]) == ("kv_transfer_failed", "decode-a", "alice@jump")
    assert firing["first_seen"] == "2023-11-14T22:13:20Z" and firing["dropped_before"] == 0
    assert bodies[1]["text"].startswith("[demo] RESOLVED decode-0:") and "ASCEND" not in bodies[1]["text"]
    assert {t["authorization"] for t in receiver.tries} == {f"Bearer {TOKEN}"}
    assert notifier.since(0)[0] == 2 and notifier.since(1)[1][0].state == "resolved"


async def test_severity_below_the_threshold_and_notify_alerts_are_not_sent(receiver: Receiver) -> None:
    settings = Notify(tmux=False, min_severity="critical", webhooks=(hook(receiver),))
    async with http_client(10) as http:
        notifier = Notifier("demo", settings, http, sender="alice@jump")
        own = Alert("notify:x", "critical", "notify", "alerts do not reach x")
        dead = Alert("state:prefill-0", "critical", "prefill-0", "prefill-0 failed")
        notifier.offer([KV_FAILED, own, dead], [])
        bodies = await asyncio.to_thread(receiver.wait, lambda b: len(b) >= 1)
        await notifier.close()
    assert [b["key"] for b in bodies] == ["state:prefill-0"]  # the warning and the notifier's own stay home


@pytest.mark.parametrize("receiver", [(503, 502)], indirect=True)
async def test_a_receiver_that_fails_for_a_while_gets_it_on_a_retry(receiver: Receiver) -> None:
    async with http_client(10) as http:
        channel = WebhookChannel(hook(receiver, retries=3), http)
        error = await channel.send(Notification("firing", KV_FAILED, 0.0, "demo", "alice@jump"))
    assert error is None and len(receiver.tries) == 3 and len(receiver.bodies) == 1
    assert (channel.delivery.delivered, channel.delivery.retried, channel.delivery.failed) == (1, 2, 0)


@pytest.mark.parametrize("receiver", [(404, 503, 503, 503)], indirect=True)
async def test_a_refusal_is_not_retried_and_a_failing_channel_is_an_alert_until_it_recovers(
    receiver: Receiver,
) -> None:
    settings = Notify(tmux=False, webhooks=(hook(receiver, retries=2),))
    async with http_client(10) as http:
        notifier = Notifier("demo", settings, http, sender="alice@jump")
        (channel,) = notifier.webhooks
        note = Notification("firing", KV_FAILED, 0.0, "demo", "alice@jump")
        assert await channel.send(note) == "HTTP 404 after 1 try"  # the receiver said no: asking again would not help
        assert await channel.send(note) == "HTTP 503 after 3 tries"
        (problem,) = notifier.problems()
        assert problem.source == "notify" and problem.severity == "warning"
        assert (
            problem.message
            == f"alerts do not reach webhook http://{receiver.host}:{receiver.port}/hook: HTTP 503 after 3 tries"
        )
        assert "secret" not in problem.message  # the query can hold a key
        assert await channel.send(note) is None and notifier.problems() == []
    assert channel.delivery.failed == 2 and channel.delivery.delivered == 1


async def test_a_missing_token_is_said_and_nothing_is_sent_without_it(receiver: Receiver) -> None:
    async with http_client(10) as http:
        channel = WebhookChannel(hook(receiver, token_env="CPCONSOLE_TEST_NO_SUCH_TOKEN"), http)
        error = await channel.send(Notification("firing", KV_FAILED, 0.0, "demo", "alice@jump"))
    assert error == "$CPCONSOLE_TEST_NO_SUCH_TOKEN is not set on this host (its bearer token)"
    assert receiver.tries == []


async def test_past_the_rate_limit_notifications_are_dropped_and_the_next_one_says_how_many(
    receiver: Receiver,
) -> None:
    now = [1000.0]
    async with http_client(10) as http:
        channel = WebhookChannel(hook(receiver, max_per_minute=3), http, clock=lambda: now[0])
        for n in range(5):
            channel.offer(Notification("firing", KV_FAILED, float(n), "demo", "alice@jump"))
        await asyncio.to_thread(receiver.wait, lambda b: len(b) == 3)
        assert channel.delivery.dropped == 2
        now[0] += 60  # a minute on: room again
        channel.offer(Notification("resolved", KV_FAILED, 9.0, "demo", "alice@jump"))
        bodies = await asyncio.to_thread(receiver.wait, lambda b: len(b) == 4)
        await channel.close()
    assert [b["dropped_before"] for b in bodies] == [0, 0, 0, 2]


@dataclass
class Tmux:
    inner: list[str]  # the server the console would run in ($TMUX points at it)
    outer: list[str]  # a terminal attached to it: its screen shows the inner status line

    def screen(self) -> str:
        return subprocess.run([*self.outer, "capture-pane", "-p"], capture_output=True, text=True).stdout


@pytest.fixture
def tmux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tmux]:
    """A tmux server of this test's own with a client attached (from a pane of a second one, whose
    screen is read back), and $TMUX pointing at it as from inside one of its panes."""
    tag = uuid.uuid4().hex[:8]
    inner = ["tmux", "-S", str(tmp_path / f"inner-{tag}"), "-f", "/dev/null"]
    outer = ["tmux", "-S", str(tmp_path / f"outer-{tag}"), "-f", "/dev/null"]
    subprocess.run([*inner, "new-session", "-d", "-s", "s", "-x", "160", "-y", "10"], check=True)
    attach = shlex.join(["env", "-u", "TMUX", *inner, "attach", "-t", "s"])
    subprocess.run([*outer, "new-session", "-d", "-s", "o", "-x", "160", "-y", "10", attach], check=True)
    pid = subprocess.run([*inner, "display-message", "-p", "#{pid}"], capture_output=True, text=True, check=True)
    monkeypatch.setenv("TMUX", f"{inner[2]},{pid.stdout.strip()},0")
    try:
        for _ in range(500):  # until the client is attached (a hang guard)
            if subprocess.run([*inner, "list-clients"], capture_output=True, text=True).stdout.strip():
                break
            time.sleep(0.02)
        yield Tmux(inner, outer)
    finally:
        for server in (outer, inner):
            subprocess.run([*server, "kill-server"], capture_output=True, check=False)


async def test_tmux_shows_the_line_and_never_runs_what_a_log_put_in_it(tmux: Tmux, tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    text = f"[demo] WARNING decode-0: #(touch {planted}) #{{session_name}} \x1b]0;title\x07"
    assert await display(text) is None
    shown = f"#(touch {planted}) #{{session_name}} ␛"  # as written; the escape sequence made inert
    for _ in range(500):  # until the status line shows it (a hang guard)
        if shown in tmux.screen():
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"never shown: {tmux.screen()}")
    assert not planted.exists()
    assert tmux_argv("x", {}) is None  # outside tmux: nothing to show it in


def with_notify(text: str, receiver: Receiver) -> str:
    """The demo profile telling this receiver, its log alerts clearing after 2 s of quiet."""
    return text + (
        "notify:\n  tmux: false\n  webhooks:\n"
        f"    - url: {receiver.url}\n      backoff_s: 0.01\n"
        "alerts:\n  error_lines_clear_s: 2\n"
    )


ONCE = {"CPCONSOLE_SIM_FAULT": "kv_transfer_failed@0.5", "CPCONSOLE_SIM_FAULT_EVERY_S": "3600"}


def raised_then_cleared(bodies: list[dict[str, Any]]) -> bool:
    return [b["state"] for b in bodies if b["kind"] == "kv_transfer_failed"] == ["firing", "resolved"]


def test_watch_sends_a_failure_while_serving_once_and_once_more_when_it_clears(
    tmp_path: Path, receiver: Receiver
) -> None:
    profile = tmp_path / "demo.yaml"
    profile.write_text(with_notify(demo_text(tmp_path, node_env={"decode-a": ONCE}), receiver))
    watcher = subprocess.Popen(
        [sys.executable, "-m", "cpconsole", "watch", str(profile)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert cpconsole("up", profile).returncode == 0
        bodies = receiver.wait(raised_then_cleared)  # several rounds apart: between them, nothing again
        firing = next(b for b in bodies if b["kind"] == "kv_transfer_failed")
        assert firing["source"] == "decode-0" and firing["place"] == "decode-a"
        assert "Mooncake transfer failed for request" in firing["evidence"]
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, _ = watcher.communicate(timeout=30)
        cpconsole("down", profile)
    assert watcher.returncode == 0
    lines = out.splitlines()
    assert lines[0].startswith("watching demo (4 processes) as ") and "webhook http://" in lines[0]
    firing_line = next(x for x in lines if "WARNING decode-0: a KV transfer between prefill and decode failed" in x)
    assert "at decode-a; requests lose their KV" in firing_line, out
    assert any("RESOLVED decode-0:" in x for x in lines), out


def alert_test(profile: Path) -> subprocess.CompletedProcess[str]:
    """`cpconsole alert-test`, outside tmux."""
    env_without_tmux = {k: v for k, v in os.environ.items() if k != "TMUX"}
    argv = [sys.executable, "-m", "cpconsole", "alert-test", str(profile)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env_without_tmux, check=False)


def test_alert_test_reaches_every_channel_or_says_which_did_not(tmp_path: Path, receiver: Receiver) -> None:
    profile = tmp_path / "demo.yaml"
    profile.write_text(with_notify(demo_text(tmp_path), receiver))
    done = alert_test(profile)
    assert done.returncode == 0, done.stderr
    assert f"webhook http://{receiver.host}:{receiver.port}/hook: delivered" in done.stdout
    assert [b["state"] for b in receiver.bodies] == ["test"]
    dead = Block.fresh().ip(52)
    profile.write_text(profile.read_text().replace(receiver.url, f"http://{dead}:{free_port(dead)}/hook"))
    done = alert_test(profile)
    assert done.returncode == 1 and "ConnectError" in done.stdout and "after 4 tries" in done.stdout


async def test_the_console_rings_for_a_raised_alert_and_tells_the_webhook(tmp_path: Path, receiver: Receiver) -> None:
    text = with_notify(demo_text(tmp_path, node_env={"decode-a": ONCE}), receiver)
    async for session in session_over(text):
        await console_hears_it(session)
    await asyncio.to_thread(receiver.wait, raised_then_cleared)


async def console_hears_it(session: Session) -> None:
    app = ConsoleApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: session.notifier is not None)
        await session.orchestrator.up()

        def states() -> list[str]:
            return [n.state for n in app.heard if n.alert.kind == "kv_transfer_failed"]

        await wait_for(pilot, lambda: states() == ["firing", "resolved"], shown=lambda: app.heard)
