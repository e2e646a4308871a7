"""Where a call's recordings live and the URLs that serve them (no Pipecat here).

Files: `{data_dir}/recordings/{user_id}/{call_id}.wav` (caller and assistant mixed, mono),
`{call_id}-stereo.wav` (caller left, assistant right), and the same names with `.mp3`. The
call's `recording_url`, `stereo_recording_url`, `recording_mp3_url` and
`stereo_recording_mp3_url` are API paths to `GET /calls/{id}/recording`; a file is served
only while its URL column is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Channels = Literal["mono", "stereo"]
Format = Literal["wav", "mp3"]

MEDIA_TYPES: dict[str, str] = {"wav": "audio/wav", "mp3": "audio/mpeg"}
# (channels, format) → the call's column naming that file.
COLUMNS: dict[tuple[str, str], str] = {
    ("mono", "wav"): "recording_url",
    ("stereo", "wav"): "stereo_recording_url",
    ("mono", "mp3"): "recording_mp3_url",
    ("stereo", "mp3"): "stereo_recording_mp3_url",
}


def directory(data_dir: Path, user_id: str) -> Path:
    return data_dir / "recordings" / user_id


def file_path(data_dir: Path, user_id: str, call_id: str, channels: str, fmt: str) -> Path:
    suffix = "-stereo" if channels == "stereo" else ""
    return directory(data_dir, user_id) / f"{call_id}{suffix}.{fmt}"


def url(call_id: str, channels: str, fmt: str) -> str:
    query = [f"channels={channels}"] if channels == "stereo" else []
    if fmt == "mp3":
        query.append("format=mp3")
    return f"/calls/{call_id}/recording" + (f"?{'&'.join(query)}" if query else "")
