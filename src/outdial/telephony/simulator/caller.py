"""The simulated person on an answered call: joins the media stream and speaks a script.

When the answer document asks for a stream (Twilio `<Connect><Stream>`, Vobiz `<Stream>`),
the caller opens the WebSocket as the carrier would and plays both ends of the phone line:
it sends 20 ms μ-law frames in real time (silence between its lines), "speaks" each line of
its script as carried-text audio (`outdial.voice.fake_speech`, which the fake STT hears),
listens to what the assistant sends back (the fake TTS carries its words the same way), and
hangs up after its last line has been answered (a line `(silence N)` keeps it quiet for N
seconds instead): Twilio gets a `stop` message, then the
socket closes; Vobiz has no inbound `stop`, the socket just closes.

Needs the `websockets` package (the `voice` extra).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Any

from outdial.voice import fake_speech

QUIET_SECONDS = 0.4  # the assistant has finished speaking after this much quiet
REPLY_TIMEOUT_SECONDS = 10.0  # a line the assistant does not answer within this is left
OPENING_TIMEOUT_SECONDS = 5.0


@dataclass
class Stream:
    """Where the answer document sends the audio, and what it passes along."""

    url: str
    parameters: dict[str, str] = field(default_factory=dict)


def stream_of(document: str) -> Stream | None:
    """The stream an answer document connects to, if any."""
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError:
        return None
    element = root.find("./Connect/Stream")
    if element is not None:  # Twilio: URL attribute, values as <Parameter>s
        parameters = {p.get("name", ""): p.get("value", "") for p in element.findall("Parameter")}
        return Stream(element.get("url", ""), parameters)
    element = root.find("./Stream")
    if element is not None and (element.text or "").strip():  # Vobiz: URL as the text
        return Stream((element.text or "").strip())
    return None


def spoken_of(document: str) -> str | None:
    """What a document has the carrier say on the line (Twilio `<Say>`, Vobiz `<Speak>`)."""
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError:
        return None
    lines = [(e.text or "").strip() for e in root.iter() if e.tag in ("Say", "Speak")]
    return " ".join(line for line in lines if line) or None


def _dial_of(document: str) -> ElementTree.Element | None:
    try:
        return ElementTree.fromstring(document).find("./Dial")
    except ElementTree.ParseError:
        return None


def dialed_of(document: str) -> str | None:
    """The number a document transfers the call to (Twilio `<Dial>`, Vobiz `<Dial><Number>`)."""
    dial = _dial_of(document)
    if dial is None:
        return None
    number = dial.find("./Number")
    text = (number if number is not None else dial).text or ""
    return text.strip() or None


def whisper_of(document: str) -> str | None:
    """Where a transfer's `<Dial>` fetches what the called party hears before the bridge:
    Twilio `<Number url>`, Vobiz `<Dial confirmSound>`."""
    dial = _dial_of(document)
    if dial is None:
        return None
    number = dial.find("./Number")
    url = number.get("url") if number is not None else None
    return url or dial.get("confirmSound") or None


@dataclass
class Conversation:
    """What the caller observed: public through the simulator's `/_sim/calls/{sid}`."""

    stream: str = "none"  # none | refused | connected
    said: list[str] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)
    clears: int = 0  # barge-in: the service told the carrier to drop queued audio
    checkpoints: list[str] = field(default_factory=list)  # Vobiz checkpoints, in order
    audio_seconds: float = 0.0  # how much of the assistant's audio arrived
    first_audio_ms: int = 0  # how much of it the first message carried
    close_code: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "said": self.said,
            "heard": self.heard,
            "clears": self.clears,
            "checkpoints": self.checkpoints,
            "audio_seconds": round(self.audio_seconds, 3),
            "first_audio_ms": self.first_audio_ms,
            "close_code": self.close_code,
        }


class Line:
    """One open stream: a sender paced at 20 ms and a receiver that decodes the assistant."""

    def __init__(self, socket: Any, dialect: str, stream_id: str) -> None:
        self.socket = socket
        self.dialect = dialect
        self.stream_id = stream_id
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.decoder = fake_speech.Decoder()
        self.last_audio = 0.0
        self.sequence = 1
        self.chunk = 0

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(message))

    async def pace(self) -> None:
        """Send one frame every 20 ms: queued speech, else silence (as a phone line does)."""
        started = time.monotonic()
        while True:
            frame = self.outbox.get_nowait() if not self.outbox.empty() else None
            await self.send_json(self._media(frame or fake_speech.SILENCE_FRAME))
            self.chunk += 1
            delay = started + self.chunk * fake_speech.FRAME_SECONDS - time.monotonic()
            await asyncio.sleep(max(0.0, delay))

    def _media(self, frame: bytes) -> dict[str, Any]:
        self.sequence += 1
        media = {
            "track": "inbound",
            "chunk": str(self.chunk),
            "timestamp": str(self.chunk * 20),
            "payload": base64.b64encode(frame).decode("ascii"),
        }
        key = "streamSid" if self.dialect == "twilio" else "streamId"
        return {
            "event": "media",
            "sequenceNumber": str(self.sequence),
            key: self.stream_id,
            "media": media,
        }

    async def listen(self, conversation: Conversation) -> None:
        async for raw in self.socket:
            message = json.loads(raw)
            event = message.get("event")
            if event in ("media", "playAudio"):
                payload = base64.b64decode(message["media"]["payload"])
                self.last_audio = time.monotonic()
                conversation.audio_seconds += len(payload) / 8000
                conversation.first_audio_ms = conversation.first_audio_ms or len(payload) // 8
                conversation.heard.extend(self.decoder.feed(payload))
            elif event in ("clear", "clearAudio"):
                conversation.clears += 1
            elif event == "mark":  # Twilio echoes a mark once the audio before it played
                await self.send_json({**message, "sequenceNumber": str(self.sequence)})
            elif event == "checkpoint":
                conversation.checkpoints.append(str(message.get("name")))
                await self.send_json({"event": "playedStream", "name": message.get("name")})

    def speak(self, text: str) -> None:
        for frame in fake_speech.encode(text):
            self.outbox.put_nowait(frame)

    async def answered(self, conversation: Conversation, before: int, within: float) -> None:
        """Wait until something new was heard and the assistant has gone quiet."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            quiet = time.monotonic() - self.last_audio >= QUIET_SECONDS
            if len(conversation.heard) > before and quiet and self.outbox.empty():
                return
            await asyncio.sleep(0.05)


def start_messages(
    dialect: str, stream: Stream, call_sid: str, account: str, stream_id: str
) -> list[dict[str, Any]]:
    """The messages a carrier sends first on a new stream."""
    if dialect == "twilio":
        return [
            {"event": "connected", "protocol": "Call", "version": "1.0.0"},
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": stream_id,
                "start": {
                    "accountSid": account,
                    "streamSid": stream_id,
                    "callSid": call_sid,
                    "tracks": ["inbound"],
                    "customParameters": stream.parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            },
        ]
    return [
        {
            "sequenceNumber": 0,
            "event": "start",
            "start": {
                "callId": call_sid,
                "streamId": stream_id,
                "accountId": account,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
            },
            "extra_headers": "{}",
        }
    ]


async def converse(
    dialect: str,
    stream: Stream,
    call_sid: str,
    account: str,
    script: list[str],
    hung_up: asyncio.Event,
    conversation: Conversation | None = None,
) -> Conversation:
    """Join the stream, speak the script turn by turn, hang up. Never raises. What it says
    and hears goes into `conversation` as it happens, when given."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    conversation = conversation or Conversation()
    stream_id = ("MZ" if dialect == "twilio" else "") + secrets.token_hex(16)
    try:
        async with connect(stream.url, open_timeout=10, close_timeout=2) as socket:
            line = Line(socket, dialect, stream_id)
            for message in start_messages(dialect, stream, call_sid, account, stream_id):
                await line.send_json(message)
            conversation.stream = "connected"
            tasks = [
                asyncio.create_task(line.pace()),
                asyncio.create_task(line.listen(conversation)),
            ]
            talk = asyncio.create_task(_talk(line, conversation, script))
            ended = asyncio.create_task(hung_up.wait())
            try:
                await asyncio.wait([talk, ended, tasks[1]], return_when=asyncio.FIRST_COMPLETED)
                if dialect == "twilio" and not tasks[1].done():
                    with contextlib.suppress(ConnectionClosed):
                        await line.send_json(
                            {
                                "event": "stop",
                                "streamSid": stream_id,
                                "stop": {"accountSid": account, "callSid": call_sid},
                            }
                        )
            finally:
                for task in (*tasks, talk, ended):
                    task.cancel()
                await asyncio.gather(*tasks, talk, ended, return_exceptions=True)
            conversation.close_code = socket.close_code
    except InvalidStatus:
        conversation.stream = "refused"
    except (OSError, ConnectionClosed, TimeoutError):
        pass
    if conversation.stream == "connected" and conversation.close_code == 1008:
        conversation.stream = "refused"
    if conversation.stream == "connecting":
        conversation.stream = "none"
    return conversation


SILENCE = re.compile(r"\(silence (\d+(?:\.\d+)?)\)")  # a script line: say nothing for N s


async def _talk(line: Line, conversation: Conversation, script: list[str]) -> None:
    await line.answered(conversation, 0, OPENING_TIMEOUT_SECONDS)
    for text in script:
        quiet = SILENCE.fullmatch(text.strip())
        if quiet:  # the person stays on the line without a word (until hung up)
            await asyncio.sleep(float(quiet.group(1)))
            continue
        before = len(conversation.heard)
        line.speak(text)
        conversation.said.append(text)
        await line.answered(conversation, before, REPLY_TIMEOUT_SECONDS)
