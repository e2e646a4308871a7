"""Benchmark: media sessions one `outdial serve` process sustains in real time, and the
voice pipeline's own added latency per turn (fake STT/LLM/TTS, Twilio Media Streams JSON).

A real `outdial serve` process (SQLite, simulated telephony, `OUTDIAL_VOICE_SERVICES=fake`,
no dialer; with `--workers N`, N processes on PostgreSQL) and, in this process, N WebSocket
clients that play the carrier and the person: each opens `/telephony/twilio/media` for a
call row written straight into the database (`in_progress`, answered by a human, a known
stream secret, as tests/integration/ test_voice_media.py does), sends a 20 ms μ-law frame
every 20 ms for the whole call (silence, or with `--line-noise` noise at that level, or a
line carried as `fake_speech` audio), listens
to the assistant's audio, and speaks its next line once the assistant's reply has played out
(plus a short pause).

Measured, for each N, over the window in which all N calls are talking:

* *added latency*: caller's last speech frame sent → first frame of the assistant's reply
  received, minus the configured end-of-turn wait (speech_settings.responsiveness → Pipecat's
  user_speech_timeout); the server's own figure (`per_turn_latency`: its turn end → the bot
  starting to speak) is read back from the calls too;
* *outbound lag*: how late each frame of the assistant's audio arrives after the previous
  ones would have finished playing on the phone (a carrier's jitter buffer playing it in real
  time): 0 while the server keeps ahead, a gap the person hears otherwise;
* CPU of the server and of this client process (% of one core), the server's RSS, `/health`
  response time (the server's event loop), and how late the client's own 20 ms sends were;
  with `--workers N`, the connections each server process holds (how the streams spread);
* the whole machine's CPU and what the host took from it (steal, over the window and in its
  worst second). A window in which the host took more than `STEAL_LIMIT`, over the window or
  in any one second, had fewer than the machine's cores: its verdict says so
  (docs/benchmarks.md counts such runs apart).

The client shares the machine with the server, so it runs on uvloop and writes each frame
straight to its socket (`Session.write`).

    .venv/bin/python -m bench.media [--sizes 5,10,25,50,100,150] [--seconds 20] [--line-noise -50]
    bash bench/run media --workers 2 [...]     # two server processes, on PostgreSQL
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import hashlib
import itertools
import json
import os
import secrets
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import uvloop
from sqlalchemy import select
from tests.dialing import fresh_database
from tests.processes import Cluster, wait_until_up

from bench.common import describe, load, machine_cpu, percentile
from outdial.database import create_engine, create_sessionmaker, write_transaction
from outdial.ids import new_id
from outdial.models import Call
from outdial.voice import fake_speech

# speech_settings.responsiveness → Pipecat's user_speech_timeout (outdial.voice.pipeline;
# copied so that this process does not import Pipecat).
END_OF_TURN_SECONDS = {"instant": 0.3, "balanced": 0.6, "relaxed": 1.2}
SECRET = "bench-media-secret"
OPENING = "Hello, this is Ava."
PAUSE_SECONDS = 0.3  # the person answers this long after the assistant's audio has played
REPLY_TIMEOUT_SECONDS = 5.0  # a line not answered within this counts as missed
FRAME = fake_speech.FRAME_SECONDS
SILENCE_PAYLOAD = base64.b64encode(fake_speech.SILENCE_FRAME).decode("ascii")
# What the line carries while the person is not talking: digital silence, or with
# `--line-noise`, a second of noise over and over.
QUIET_LINE = [SILENCE_PAYLOAD]
NUMBERS = itertools.count()  # each call its own number (one call per number and user)
GROUPS = 10  # sender tasks, each with its own phase in the 20 ms period
STEAL_LIMIT = 10.0  # % of a core the host may take, over a window and in any second of it


@dataclass
class Session:
    """One call's media stream, as the carrier and the person on the phone see it."""

    index: int
    call_id: str
    socket: Any = None
    stream_sid: str = field(default_factory=lambda: "MZ" + secrets.token_hex(16))
    outbox: collections.deque[tuple[str, bool]] = field(default_factory=collections.deque)
    chunk: int = 0
    closed: bool = False
    awaiting: float | None = None  # when the last frame of the person's line was sent
    replied: asyncio.Event = field(default_factory=asyncio.Event)
    playout_end: float | None = None  # when the assistant's audio received so far ends
    opened_at: float | None = None  # the opening's first frame
    said: int = 0
    missed: int = 0
    replies: list[tuple[float, float]] = field(default_factory=list)  # (when, seconds)
    lags: list[tuple[float, float]] = field(default_factory=list)  # (when, seconds)

    def media(self, payload: str) -> str:
        """A Twilio `media` message, as `json.dumps` would write it (nothing in it needs
        escaping: the ids are hex, the payload base64)."""
        self.chunk += 1
        return (
            f'{{"event": "media", "sequenceNumber": "{self.chunk + 1}", '
            f'"streamSid": "{self.stream_sid}", "media": {{"track": "inbound", '
            f'"chunk": "{self.chunk}", "timestamp": "{self.chunk * 20}", '
            f'"payload": "{payload}"}}}}'
        )

    def write(self, text: str) -> None:
        """Send a text message at once, without the client's machinery around a send (a
        lock, a context manager and a wait for the buffer to drain, each message): the
        client shares the machine with the server, so it should cost as little as it can.
        A server that stops reading shows as late replies and audio, as before."""
        protocol = self.socket.protocol
        protocol.send_text(text.encode())
        self.socket.transport.write(b"".join(protocol.data_to_send()))

    def send_frame(self) -> None:
        """The next 20 ms of the line: the person's speech if any, else silence."""
        if self.closed:
            return
        quiet = QUIET_LINE[self.chunk % len(QUIET_LINE)]
        payload, last = self.outbox.popleft() if self.outbox else (quiet, False)
        try:
            self.write(self.media(payload))
        except Exception:
            self.closed = True
            return
        if last:
            self.awaiting = time.monotonic()

    def speak(self, text: str) -> None:
        frames = fake_speech.encode(text)
        for number, frame in enumerate(frames, 1):
            self.outbox.append((base64.b64encode(frame).decode("ascii"), number == len(frames)))

    async def listen(self) -> None:
        try:
            async for raw in self.socket:
                now = time.monotonic()
                message = json.loads(raw)
                event = message.get("event")
                if event == "media":  # (base64: 4 characters for 3 bytes of μ-law, 8 a ms)
                    payload = message["media"]["payload"]
                    size = len(payload) // 4 * 3 - payload[-2:].count("=")
                    self.heard(now, size / 8000)
                elif event == "mark":  # Twilio echoes a mark once the audio before it played
                    self.write(json.dumps(message))
        except Exception:
            pass
        self.closed = True

    def heard(self, now: float, seconds: float) -> None:
        if self.awaiting is not None:  # the reply's first frame: the turn's latency
            self.replies.append((now, now - self.awaiting))
            self.awaiting = None
            self.replied.set()
            self.playout_end = now
        elif self.playout_end is None:  # the opening's first frame
            self.opened_at = self.playout_end = now
        else:  # later frames: late if the phone has already played everything before them
            lag = now - self.playout_end
            self.lags.append((now, max(0.0, lag)))
            self.playout_end = max(self.playout_end, now)
        self.playout_end += seconds

    async def talk(self, until: float) -> None:
        """Answer each reply with a new line once it has played, until `until`."""
        while self.playout_end is None and not self.closed:
            await asyncio.sleep(0.02)
        line = 0
        while not self.closed:
            while self.playout_end is not None and time.monotonic() < (
                self.playout_end + PAUSE_SECONDS
            ):
                await asyncio.sleep(0.02)
            if time.monotonic() >= until:
                return
            self.replied.clear()
            self.speak(f"Tell me more about option {self.index} {line}")
            self.said += 1
            line += 1
            try:
                await asyncio.wait_for(self.replied.wait(), REPLY_TIMEOUT_SECONDS)
            except TimeoutError:
                self.missed += 1
                self.awaiting = None


class Senders:
    """Send one frame per session every 20 ms; GROUPS tasks spread over the period."""

    def __init__(self) -> None:
        self.groups: list[list[Session]] = [[] for _ in range(GROUPS)]
        self.late: list[tuple[float, float]] = []
        self.stopped = False
        self.tasks: list[asyncio.Task[None]] = []

    def add(self, session: Session) -> None:
        self.groups[session.index % GROUPS].append(session)

    def start(self) -> None:
        origin = time.monotonic()
        self.tasks = [
            asyncio.create_task(self._run(group, origin + number * FRAME / GROUPS))
            for number, group in enumerate(self.groups)
        ]

    async def _run(self, group: list[Session], origin: float) -> None:
        tick = 0
        while not self.stopped:
            target = origin + tick * FRAME
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            self.late.append((now, now - target))
            for session in list(group):
                session.send_frame()
            tick += 1

    async def stop(self) -> None:
        self.stopped = True
        await asyncio.gather(*self.tasks, return_exceptions=True)


class Health:
    """`GET /health` every 100 ms: how long the server's event loop takes to answer."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.times: list[tuple[float, float]] = []
        self.stopped = False

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:
            while not self.stopped:
                started = time.monotonic()
                with contextlib.suppress(httpx.HTTPError):
                    await client.get("/health")
                    self.times.append((started, time.monotonic() - started))
                await asyncio.sleep(0.1)


def _within(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return [value for when, value in samples if start <= when <= end]


def _ms(values: list[float], fraction: float) -> float:
    return percentile(values, fraction) * 1000 if values else float("nan")


def _cpu(process: psutil.Process) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in [process, *process.children(True)])


def _own_cpu(process: psutil.Process) -> float:
    """This process alone (the server is its child)."""
    return float(sum(process.cpu_times()[:2]))


def _streams(process: psutil.Process, port: int) -> list[int]:
    """Open connections to the API port held by each process of the server that holds any
    (with `--workers N`, how the kernel spread the streams over the N processes)."""
    counts = []
    for p in [process, *process.children(True)]:
        held = sum(
            1
            for c in p.net_connections("tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
        )
        if held:
            counts.append(held)
    return sorted(counts, reverse=True)


def _rss_mib(process: psutil.Process) -> float:
    return sum(p.memory_info().rss for p in [process, *process.children(True)]) / 2**20


async def _calls(url: str, user_id: str, assistant_id: str, count: int) -> list[str]:
    """`count` live calls answered by a person, each with the stream secret SECRET."""
    engine = create_engine(url)
    try:
        sessionmaker = create_sessionmaker(engine)
        ids = [new_id("call") for _ in range(count)]
        async with write_transaction(sessionmaker) as session:
            for call_id in ids:
                session.add(
                    Call(
                        id=call_id,
                        user_id=user_id,
                        assistant_id=assistant_id,
                        provider="twilio",
                        to_number=f"+1415{next(NUMBERS):07d}",
                        status="in_progress",
                        answered_by="human",
                        provider_call_sid="CA" + secrets.token_hex(16),
                        secret_hash=hashlib.sha256(SECRET.encode()).hexdigest(),
                    )
                )
    finally:
        await engine.dispose()
    return ids


async def _open(session: Session, base: str) -> None:
    from websockets.asyncio.client import connect

    session.socket = await connect(
        base.replace("http://", "ws://") + "/telephony/twilio/media",
        open_timeout=30,
        close_timeout=5,
        max_queue=None,
    )
    start = {
        "accountSid": "AC" + "0" * 32,
        "streamSid": session.stream_sid,
        "callSid": "CA" + secrets.token_hex(16),
        "tracks": ["inbound"],
        "customParameters": {"call_id": session.call_id, "secret": SECRET},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    await session.socket.send(json.dumps({"event": "connected", "protocol": "Call"}))
    await session.socket.send(
        json.dumps(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": session.stream_sid,
                "start": start,
            }
        )
    )


async def _hang_up(session: Session) -> None:
    with contextlib.suppress(Exception):
        if not session.closed:
            await session.socket.send(
                json.dumps({"event": "stop", "streamSid": session.stream_sid, "stop": {}})
            )
        await session.socket.close()


async def _stored(url: str, ids: list[str]) -> tuple[int, list[float], collections.Counter[str]]:
    """Calls whose conversation is stored, their server-side turn latencies (s), end reasons."""
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            query = select(Call.summary, Call.per_turn_latency, Call.ended_reason).where(
                Call.id.in_(ids)
            )
            rows = (await session.execute(query)).all()
    finally:
        await engine.dispose()
    latencies = [
        turn["ms"] / 1000 for summary, turns, _ in rows if summary for turn in (turns or [])
    ]
    reasons = collections.Counter(str(reason) for summary, _, reason in rows if summary)
    return sum(1 for summary, _, _ in rows if summary), latencies, reasons


async def level(
    cluster: Cluster,
    server: psutil.Process,
    credentials: dict[str, str],
    assistant_id: str,
    count: int,
    seconds: float,
    wait: float,
) -> dict[str, Any]:
    """`count` simultaneous calls talking for `seconds` once all have heard their opening."""
    ids = await _calls(cluster.database_url, credentials["X-User-ID"], assistant_id, count)
    sessions = [Session(index, call_id) for index, call_id in enumerate(ids)]
    senders, health = Senders(), Health(cluster.api)
    senders.start()
    health_task = asyncio.create_task(health.run())
    ramp_started = time.monotonic()
    listeners = []
    for batch in range(0, count, 10):  # ten streams at a time, as calls would be answered
        opened = sessions[batch : batch + 10]
        failed = await asyncio.gather(
            *(_open(s, cluster.api) for s in opened), return_exceptions=True
        )
        for session, error in zip(opened, failed, strict=True):
            if error is not None or session.socket is None:
                session.closed = True
                continue
            senders.add(session)
            listeners.append(asyncio.create_task(session.listen()))
        await asyncio.sleep(0.05)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
        s.opened_at is None and not s.closed for s in sessions
    ):
        await asyncio.sleep(0.05)
    start = time.monotonic() + 1.0  # the last openings are still playing
    ramp = start - ramp_started
    end = start + seconds
    talkers = [asyncio.create_task(s.talk(end)) for s in sessions]
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    me = psutil.Process()
    cpu_before = (_cpu(server), _own_cpu(me), time.monotonic())
    machine_before = psutil.cpu_times()
    second = (machine_before, time.monotonic())
    rss = worst_steal = 0.0
    streams = _streams(server, cluster.api_port)
    while time.monotonic() < end:
        await asyncio.sleep(1.0)
        rss = max(rss, _rss_mib(server))
        times, now = psutil.cpu_times(), time.monotonic()
        worst_steal = max(worst_steal, machine_cpu(second[0], times)[1] / (now - second[1]) * 100)
        second = (times, now)
    cpu_after = (_cpu(server), _own_cpu(me), time.monotonic())
    machine = machine_cpu(machine_before, psutil.cpu_times())
    await asyncio.gather(*talkers)
    await asyncio.sleep(0.5)
    await senders.stop()
    health.stopped = True
    await asyncio.gather(*(_hang_up(s) for s in sessions))
    await asyncio.gather(*listeners, health_task, return_exceptions=True)
    drained = time.monotonic() + 60
    while time.monotonic() < drained:
        stored, server_latencies, reasons = await _stored(cluster.database_url, ids)
        if stored == count:
            break
        await asyncio.sleep(0.5)
    elapsed = cpu_after[2] - cpu_before[2]
    replies = [r for s in sessions for r in s.replies]
    added = [raw - wait for raw in _within(replies, start, end)]
    half = start + seconds / 2
    return {
        "sessions": count,
        "connected": sum(1 for s in sessions if s.opened_at is not None),
        "ramp": ramp,
        "said": sum(s.said for s in sessions),
        "missed": sum(s.missed for s in sessions),
        "turns": len(added),
        "added": added,
        "added_first_half": [raw - wait for raw in _within(replies, start, half)],
        "added_second_half": [raw - wait for raw in _within(replies, half, end)],
        "server_turns": server_latencies,
        "lags": _within([lag for s in sessions for lag in s.lags], start, end),
        "send_late": _within(senders.late, start, end),
        "health": _within(health.times, start, end),
        "server_cpu": (cpu_after[0] - cpu_before[0]) / elapsed * 100,
        "client_cpu": (cpu_after[1] - cpu_before[1]) / elapsed * 100,
        "machine_cpu": machine[0] / elapsed * 100,
        "steal": machine[1] / elapsed * 100,
        "worst_steal": worst_steal,
        "server_rss": rss,
        "streams": streams,
        "stored": stored,
        "reasons": dict(reasons),
        "load": load(),
    }


def keeps_up(r: dict[str, Any]) -> bool:
    """Every call talked, ≥ 99 % of lines were answered, the assistant's audio never ran
    dry on the phone (outbound lag p99 ≤ one 20 ms frame), and replies came within 100 ms of
    the configured wait (added latency p95 ≤ 100 ms; an inbound backlog makes it grow)."""
    answered = 1 - r["missed"] / max(1, r["said"])
    return (
        r["connected"] == r["sessions"]
        and answered >= 0.99
        and bool(r["lags"])
        and percentile(r["lags"], 0.99) <= FRAME
        and bool(r["added"])
        and percentile(r["added"], 0.95) <= 0.1
    )


def _print(title: str, r: dict[str, Any]) -> None:
    a, s, lags = r["added"], r["server_turns"], r["lags"]
    print(
        f"\n[{title}] {r['connected']}/{r['sessions']} streams talking (ramp {r['ramp']:.1f} s); "
        f"{r['turns']} turns measured, {r['missed']}/{r['said']} lines unanswered; "
        f"{r['stored']} calls stored; load {r['load']}"
    )
    print(
        f"  added latency (client): p50 {_ms(a, 0.5):.1f}  p95 {_ms(a, 0.95):.1f}  "
        f"p99 {_ms(a, 0.99):.1f}  max {_ms(a, 1.0):.1f} ms "
        f"(first half p50 {_ms(r['added_first_half'], 0.5):.1f}, "
        f"second half p50 {_ms(r['added_second_half'], 0.5):.1f})"
    )
    print(
        f"  server per_turn_latency: p50 {_ms(s, 0.5):.1f}  p95 {_ms(s, 0.95):.1f}  "
        f"p99 {_ms(s, 0.99):.1f} ms over {len(s)} turns (whole calls)"
    )
    late_frames = sum(1 for lag in lags if lag > 0)
    print(
        f"  outbound lag: p50 {_ms(lags, 0.5):.1f}  p99 {_ms(lags, 0.99):.1f}  "
        f"max {_ms(lags, 1.0):.1f} ms over {len(lags)} frames ({late_frames} late)"
    )
    print(
        f"  server CPU {r['server_cpu']:.0f} % of a core "
        f"({r['server_cpu'] / r['sessions']:.1f} % per session), RSS {r['server_rss']:.0f} MiB; "
        f"client CPU {r['client_cpu']:.0f} %; /health p50 {_ms(r['health'], 0.5):.1f} "
        f"p99 {_ms(r['health'], 0.99):.1f} ms; client send lateness p99 "
        f"{_ms(r['send_late'], 0.99):.1f} ms"
    )
    print(
        f"  machine CPU {r['machine_cpu']:.0f} % of a core (everything, the database "
        f"included), stolen by the host {r['steal']:.0f} % (its worst second "
        f"{r['worst_steal']:.0f} %)"
    )
    if len(r["streams"]) > 1:
        print(f"  connections per server process: {' / '.join(map(str, r['streams']))}")
    verdict = "yes" if keeps_up(r) else "NO"
    if not whole(r):
        verdict += (
            f" (the host took {r['steal']:.0f} % of a core, {r['worst_steal']:.0f} % in a "
            "second: not all of the machine)"
        )
    print(f"  keeps up with real time: {verdict}")


def whole(r: dict[str, Any]) -> bool:
    """Whether the window had the machine's cores: the host took at most `STEAL_LIMIT`, over
    the window and in its worst second."""
    return bool(max(r["steal"], r["worst_steal"]) <= STEAL_LIMIT)


def noise(dbfs: float) -> list[str]:
    """A second of white noise at `dbfs` (RMS), as 20 ms μ-law payloads."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    rms = 32768 * 10 ** (dbfs / 20)
    samples = np.random.default_rng(0).normal(0, rms, 8000).clip(-32768, 32767)
    ulaw = audioop.lin2ulaw(samples.astype(np.int16).tobytes(), 2)
    return [base64.b64encode(ulaw[i : i + 160]).decode("ascii") for i in range(0, 8000, 160)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="5,10,25,50,100,150")
    parser.add_argument("--seconds", type=float, default=20, help="talking window per size")
    parser.add_argument("--latency-seconds", type=float, default=60)
    parser.add_argument("--latency-sessions", type=int, default=1)
    parser.add_argument("--responsiveness", default="instant", choices=END_OF_TURN_SECONDS)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (`outdial serve --workers N`; more than one needs PostgreSQL)",
    )
    parser.add_argument("--postgres-url", default=os.environ.get("OUTDIAL_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--line-noise",
        type=float,
        help="dBFS: noise this loud on the line while the person is quiet (default: silence)",
    )
    args = parser.parse_args()
    if args.line_noise is not None:
        QUIET_LINE[:] = noise(args.line_noise)
    print("\n".join(await describe(None)))
    wait = END_OF_TURN_SECONDS[args.responsiveness]
    line = "silence" if args.line_noise is None else f"noise at {args.line_noise:g} dBFS"
    print(
        f"fake services, Twilio framing, responsiveness {args.responsiveness} "
        f"(end-of-turn wait {wait * 1000:.0f} ms subtracted); the quiet line: {line}"
    )
    os.environ.update(
        {
            "OUTDIAL_VOICE_SERVICES": "fake",
            "OUTDIAL_LOG_LEVEL": "WARNING",
            "OUTDIAL_WEBHOOKS": "false",
        }
    )
    if args.workers > 1 and not args.postgres_url:
        raise SystemExit("--workers > 1 needs PostgreSQL: run it through `bash bench/run media`")
    with tempfile.TemporaryDirectory(prefix="outdial-bench-media-") as tmp:
        workdir = Path(tmp)
        backend = "postgresql" if args.workers > 1 else "sqlite"
        async with fresh_database(backend, workdir, args.postgres_url) as url:
            await _run(args, wait, Cluster(url, workdir, api_processes=args.workers))


async def _run(args: argparse.Namespace, wait: float, cluster: Cluster) -> None:
    """Start the server, make the assistant, measure each size."""
    try:
        cluster.run("migrate")
        cluster.spawn("api", "serve", "--no-local-key", "--workers", str(args.workers))
        await wait_until_up(f"{cluster.api}/health")
        credentials = cluster.credentials()
        async with httpx.AsyncClient(base_url=cluster.api, headers=credentials, timeout=30) as api:
            response = await api.post(
                "/assistants",
                json={
                    "name": "Ava",
                    "first_message": OPENING,
                    "speech_settings": {"responsiveness": args.responsiveness},
                },
            )
            response.raise_for_status()
            assistant_id = response.json()["id"]
        server = psutil.Process(cluster.processes["api"].pid)
        run = (cluster, server, credentials, assistant_id)
        quiet = await level(*run, args.latency_sessions, args.latency_seconds, wait)
        _print(f"turn latency, {args.latency_sessions} session(s)", quiet)
        results = []
        for size in [int(s) for s in args.sizes.split(",") if s]:
            result = await level(*run, size, args.seconds, wait)
            _print(f"{size} concurrent sessions", result)
            results.append(result)
        kept = [r["sessions"] for r in results if keeps_up(r)]
        print(f"\nlargest N kept up: {max(kept) if kept else 'none'}")
        short = [str(r["sessions"]) for r in results if not whole(r)]
        if short:
            limit = f"{STEAL_LIMIT:.0f} %"
            print(
                f"measured with the host taking more than {limit} (in a second): {', '.join(short)}"
            )
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


if __name__ == "__main__":
    uvloop.run(main())  # the client's own event loop, as light as the server's
