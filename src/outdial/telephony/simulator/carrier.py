"""The simulated carrier's calls: their lifecycles, their callbacks, and what was observed.

Each call runs as one task: ring, then the fate the scenario drew (a human or a machine
answers, nobody answers, busy, failure), sending the provider's callbacks over real HTTP,
signed with the account's token. A machine records what the service's documents say to it
(a Twilio answer TwiML's `<Say>`; the `<Speak>` of the XML a Vobiz call is transferred to);
the colleague a warm transfer reaches records the briefing it is given before the bridge.
The carrier also watches what a carrier could see of the dialer's behaviour: live calls per
caller number and overlapping calls to one person.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from twilio.request_validator import RequestValidator

from outdial.telephony import twilio, vobiz
from outdial.telephony.simulator import caller
from outdial.telephony.simulator.scenario import Dice, Fate, Scenario

# A machine left alone keeps the line open this long (the service hangs up or transfers).
MACHINE_LINGER_SECONDS = 3.0
FORM = "application/x-www-form-urlencoded"  # how carriers post their callbacks


@dataclass
class SimCall:
    sid: str
    dialect: str  # "twilio" | "vobiz"
    account: str
    token: str
    to_number: str
    from_number: str
    urls: dict[str, str]
    fate: Fate
    ring_seconds: float
    talk_seconds: float
    state: str = "queued"
    created: float = field(default_factory=time.monotonic)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    answered: float | None = None
    ended: float | None = None
    hangup: asyncio.Event = field(default_factory=asyncio.Event)
    # The document the call is following is over: it was hung up, or transferred.
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)
    transfer_url: str | None = None
    sequence: int = 0
    conversation: caller.Conversation | None = None
    voicemail: str | None = None  # what a machine recorded
    transferred_to: str | None = None  # the number a person's call was transferred to
    briefing: str | None = None  # what the colleague heard before a warm transfer's bridge

    @property
    def live(self) -> bool:
        return self.ended is None

    @property
    def duration(self) -> int:
        if self.answered is None:
            return 0
        return max(0, round((self.ended or time.monotonic()) - self.answered))


class Observations:
    """What the carrier saw: the numbers a concurrency test asserts on."""

    def __init__(self) -> None:
        self.created = 0
        self.rate_limited = 0
        self.rejected = 0
        self.lost_responses = 0
        self.server_errors = 0
        self.lookups = 0
        self.looking_up = 0  # listings and fetches being answered
        self.lookups_at_once = 0  # the most at the same time
        self.live_by_from: Counter[str] = Counter()
        self.peak_by_from: Counter[str] = Counter()
        self.live_by_to: Counter[tuple[str, str]] = Counter()
        self.overlaps: list[dict[str, Any]] = []
        self.dials_by_to: defaultdict[str, int] = defaultdict(int)

    def start(self, call: SimCall) -> None:
        self.created += 1
        self.dials_by_to[call.to_number] += 1
        key = (call.account, call.to_number)
        if self.live_by_to[key]:
            self.overlaps.append({"to": call.to_number, "sid": call.sid})
        self.live_by_to[key] += 1
        self.live_by_from[call.from_number] += 1
        self.peak_by_from[call.from_number] = max(
            self.peak_by_from[call.from_number], self.live_by_from[call.from_number]
        )

    def end(self, call: SimCall) -> None:
        self.live_by_to[(call.account, call.to_number)] -= 1
        self.live_by_from[call.from_number] -= 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "rate_limited": self.rate_limited,
            "rejected": self.rejected,
            "lost_responses": self.lost_responses,
            "server_errors": self.server_errors,
            "lookups": self.lookups,
            "lookups_at_once": self.lookups_at_once,
            "live": sum(self.live_by_from.values()),
            "live_by_from": dict(self.live_by_from),
            "peak_by_from": dict(self.peak_by_from),
            "overlaps": self.overlaps,
            "dials_by_to": dict(self.dials_by_to),
        }


@dataclass(frozen=True)
class Reply:
    """The service's answer to a callback."""

    status_code: int
    text: str


Sender = Callable[[SimCall, str, dict[str, str]], Awaitable[Reply | None]]


class Carrier:
    """Calls in flight, the scenario that decides them, and the client that calls back."""

    def __init__(self, scenario: Scenario, client: aiohttp.ClientSession) -> None:
        self.scenario = scenario
        self.dice = Dice(scenario)
        # aiohttp itself rather than httpx over it (`outdial.http`): the simulator sends five
        # callbacks per call, and httpx's request and response objects were a quarter of
        # its CPU at saturation (docs/benchmarks.md, dialer).
        self.client = client
        self.calls: dict[str, SimCall] = {}
        self.seen = Observations()
        self._tasks: set[asyncio.Task[None]] = set()
        # A carrier calls back with a few requests in flight at once, not thousands.
        self._sending = asyncio.Semaphore(32)

    def set_scenario(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.dice = Dice(scenario)

    def open_call(
        self,
        dialect: str,
        account: str,
        token: str,
        to_number: str,
        from_number: str,
        urls: dict[str, str],
    ) -> SimCall:
        prefix = "CA" if dialect == "twilio" else ""
        sid = prefix + secrets.token_hex(16)
        call = SimCall(
            sid,
            dialect,
            account,
            token,
            to_number,
            from_number,
            urls,
            self.dice.fate(),
            self.dice.seconds(self.scenario.ring_seconds),
            self.dice.seconds(self.scenario.talk_seconds),
        )
        self.calls[sid] = call
        self.seen.start(call)
        run = self._run_twilio if dialect == "twilio" else self._run_vobiz
        self._spawn(run(call))
        return call

    def hang_up(self, sid: str) -> bool:
        call = self.calls.get(sid)
        if call is None or not call.live:
            return False
        call.hangup.set()
        call.interrupted.set()
        return True

    def transfer(self, sid: str, url: str) -> bool:
        """Vobiz: the answered call's A-leg follows the XML at `url` from now on."""
        call = self.calls.get(sid)
        if call is None or not call.live or call.state != "in-progress":
            return False
        call.transfer_url = url
        call.interrupted.set()
        return True

    def redirect(self, sid: str, twiml: str) -> bool:
        """Twilio: the answered call follows new TwiML (a `<Dial>` transfers the person)."""
        call = self.calls.get(sid)
        if call is None or not call.live or call.state != "in-progress":
            return False
        call.transferred_to = caller.dialed_of(twiml)
        call.interrupted.set()
        whisper = caller.whisper_of(twiml)
        if whisper is not None:
            self._spawn(self._brief(call, whisper))
        return True

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait(
        self, call: SimCall, seconds: float, until: asyncio.Event | None = None
    ) -> bool:
        """Sleep unless the call is hung up (or `until` is set) first; True when it was."""
        try:
            await asyncio.wait_for((until or call.hangup).wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    def _finish(self, call: SimCall, state: str) -> None:
        call.state = state
        call.ended = time.monotonic()
        self.seen.end(call)

    # Twilio -------------------------------------------------------------------------------

    async def _run_twilio(self, call: SimCall) -> None:
        try:
            await self._twilio_status(call, "initiated")
            call.state = "ringing"
            await self._twilio_status(call, "ringing")
            if await self._wait(call, call.ring_seconds):
                self._finish(call, "canceled")
                await self._twilio_status(call, "canceled")
                return
            if call.fate in (Fate.HUMAN, Fate.MACHINE):
                await self._twilio_talk(call)
                return
            state = {Fate.NO_ANSWER: "no-answer", Fate.BUSY: "busy"}.get(call.fate, "failed")
            self._finish(call, state)
            await self._twilio_status(
                call, state, {"SipResponseCode": "404"} if state == "failed" else None
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # the carrier never dies of one call
            if call.live:
                self._finish(call, "failed")

    async def _twilio_talk(self, call: SimCall) -> None:
        call.state, call.answered = "in-progress", time.monotonic()
        answered_by = "human" if call.fate is Fate.HUMAN else "machine_end_beep"
        reply = await self._send(
            call,
            call.urls["answer"],
            self._twilio_params(call, "in-progress", AnsweredBy=answered_by),
        )
        await self._twilio_status(call, "in-progress", {"AnsweredBy": answered_by})
        talk = call.talk_seconds
        if reply is not None and "<Hangup" in reply.text:
            talk = 0.0
        if reply is not None and reply.status_code == 200 and call.fate is Fate.MACHINE:
            call.voicemail = caller.spoken_of(reply.text)
        stream = self._stream(reply)
        if stream is not None:
            await self._talk_on_stream(call, stream)
        else:
            await self._wait(call, talk)
        self._finish(call, "completed")
        await self._twilio_status(call, "completed", {"CallDuration": str(call.duration)})

    def _twilio_params(self, call: SimCall, status: str, **extra: str) -> dict[str, str]:
        return {
            "CallSid": call.sid,
            "AccountSid": call.account,
            "From": call.from_number,
            "To": call.to_number,
            "CallStatus": status,
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
            **extra,
        }

    async def _twilio_status(
        self, call: SimCall, status: str, extra: dict[str, str] | None = None
    ) -> None:
        params = self._twilio_params(
            call,
            status,
            SequenceNumber=str(call.sequence),
            CallbackSource="call-progress-events",
            **(extra or {}),
        )
        call.sequence += 1
        self._deliver(call, call.urls["status"], params)

    # Vobiz --------------------------------------------------------------------------------

    async def _run_vobiz(self, call: SimCall) -> None:
        try:
            if call.to_number in self.scenario.invalid_numbers:
                await self._vobiz_hangup(call, "3050", "UNALLOCATED_NUMBER", "failed")
                return
            if self.scenario.account_failure_cause:
                code = self.scenario.account_failure_cause
                await self._vobiz_hangup(call, code, "CALL_REJECTED", "failed")
                return
            call.state = "ringing"
            self._deliver(call, call.urls["ring"], self._vobiz_params(call, "Ring", "ringing"))
            if await self._wait(call, call.ring_seconds):
                await self._vobiz_hangup(call, "1000", "ORIGINATOR_CANCEL", "cancel")
                return
            if call.fate in (Fate.HUMAN, Fate.MACHINE):
                await self._vobiz_talk(call)
                return
            cause = {
                Fate.NO_ANSWER: ("3000", "NO_ANSWER", "no-answer"),
                Fate.BUSY: ("3010", "USER_BUSY", "busy"),
            }.get(call.fate, ("3090", "NORMAL_TEMPORARY_FAILURE", "failed"))
            await self._vobiz_hangup(call, *cause)
        except asyncio.CancelledError:
            raise
        except Exception:
            if call.live:
                self._finish(call, "failed")

    async def _vobiz_talk(self, call: SimCall) -> None:
        call.state, call.answered = "in-progress", time.monotonic()
        reply = await self._send(
            call, call.urls["answer"], self._vobiz_params(call, "StartApp", "in-progress")
        )
        # Vobiz opens the stream on answer; its machine verdict may come while it is open.
        stream = self._stream(reply)
        talking = asyncio.ensure_future(self._talk_on_stream(call, stream)) if stream else None
        machine = "true" if call.fate is Fate.MACHINE else "false"
        self._deliver(
            call,
            call.urls["machine"],
            self._vobiz_params(
                call, "MachineDetection", "in-progress", Machine=machine, IfMachine="continue"
            ),
        )
        if talking is not None:
            await talking
        if talking is None or machine == "true":
            linger = call.talk_seconds if machine == "false" else MACHINE_LINGER_SECONDS
            await self._wait(call, linger, call.interrupted)
        if call.transfer_url is not None and not call.hangup.is_set():
            await self._follow_transfer(call, call.transfer_url)
        await self._vobiz_hangup(call, "4000", "NORMAL_CLEARING", "completed")

    async def _follow_transfer(self, call: SimCall, url: str) -> None:
        """Fetch the XML the call was transferred to (signed like every callback); a machine
        records what it says. Its `<Wait>` takes no time here, and `<Hangup/>` (or the end of
        the document) ends the call."""
        reply = await self._send(call, url, self._vobiz_params(call, "Transfer", "in-progress"))
        if reply is not None and reply.status_code == 200 and call.fate is Fate.MACHINE:
            call.voicemail = caller.spoken_of(reply.text)
        elif reply is not None and reply.status_code == 200:
            call.transferred_to = caller.dialed_of(reply.text)
            whisper = caller.whisper_of(reply.text)
            if whisper is not None:
                await self._brief(call, whisper)

    async def _brief(self, call: SimCall, url: str) -> None:
        """The colleague answers a warm transfer: fetch what they hear first (Twilio's
        `<Number url>`, Vobiz's `confirmSound`; a POST signed like every callback)."""
        params = (
            self._twilio_params(call, "in-progress")
            if call.dialect == "twilio"
            else self._vobiz_params(call, "Transfer", "in-progress")
        )
        reply = await self._send(call, url, params)
        if reply is not None and reply.status_code == 200:
            call.briefing = caller.spoken_of(reply.text)

    # The scripted caller -------------------------------------------------------------------

    def _stream(self, reply: Reply | None) -> caller.Stream | None:
        """The stream to join, when the scenario has a caller script and the document asks."""
        if self.scenario.caller_script is None or reply is None or reply.status_code != 200:
            return None
        return caller.stream_of(reply.text)

    async def _talk_on_stream(self, call: SimCall, stream: caller.Stream) -> None:
        call.conversation = caller.Conversation(stream="connecting")
        await caller.converse(
            call.dialect,
            stream,
            call.sid,
            call.account,
            list(self.scenario.caller_script or []),
            call.interrupted,
            call.conversation,
        )

    def _vobiz_params(self, call: SimCall, event: str, status: str, **extra: str) -> dict[str, str]:
        return {
            "CallUUID": call.sid,
            "RequestUUID": call.sid,
            "From": call.from_number,
            "To": call.to_number,
            "Direction": "outbound",
            "Event": event,
            "CallStatus": status,
            **extra,
        }

    async def _vobiz_hangup(self, call: SimCall, code: str, cause: str, status: str) -> None:
        self._finish(call, status)
        self._deliver(
            call,
            call.urls["hangup"],
            self._vobiz_params(
                call,
                "Hangup",
                status,
                HangupCauseCode=code,
                HangupCause=cause,
                Duration=str(call.duration),
                BillDuration=str(call.duration),
            ),
        )

    # Delivery -----------------------------------------------------------------------------

    def _deliver(self, call: SimCall, url: str, params: dict[str, str]) -> None:
        """Send a callback; the scenario may drop or duplicate it, or let later ones overtake it."""
        if self.dice.chance(self.scenario.drop_rate):
            return
        late = self.scenario.callback_delay_seconds
        delay = late + (
            self.dice.seconds((0.05, 0.3)) if self.dice.chance(self.scenario.reorder_rate) else 0
        )
        self._spawn(self._send_later(call, url, params, delay))
        if self.dice.chance(self.scenario.duplicate_rate):
            self._spawn(self._send_later(call, url, params, late + self.dice.seconds((0.0, 0.2))))

    async def _send_later(
        self, call: SimCall, url: str, params: dict[str, str], delay: float
    ) -> None:
        if delay:
            await asyncio.sleep(delay)
        await self._send(call, url, params)

    async def _send(self, call: SimCall, url: str, params: dict[str, str]) -> Reply | None:
        # The form encoded here: aiohttp's form handling costs several times as much.
        headers = {**self._signature(call, url, params), "Content-Type": FORM}
        body = urlencode(params).encode()
        async with self._sending:
            try:
                async with self.client.post(url, data=body, headers=headers) as response:
                    return Reply(response.status, await response.text())
            except (aiohttp.ClientError, TimeoutError):
                return None  # a service that is down misses the callback, as with a carrier

    def _signature(self, call: SimCall, url: str, params: dict[str, str]) -> dict[str, str]:
        if call.dialect == "twilio":
            signature = RequestValidator(call.token).compute_signature(url, twilio.Fields(params))
            return {"X-Twilio-Signature": signature}
        nonce = "".join(secrets.choice("0123456789") for _ in range(20))
        return {
            "X-Vobiz-Signature-V3": vobiz.sign_v3(url, nonce, call.token),
            "X-Vobiz-Signature-V3-Nonce": nonce,
        }
