from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class RecordingOut(BaseModel):
    call_sid: str
    url: str = Field(description="Signed URL of the MP3; needs no API key; valid 1 hour.")
    expires_at: str
    duration_sec: int = Field(description="Whole seconds of audio, rounded down.")
    size_bytes: int
    format: Literal["mp3"] = "mp3"


class RecordingEnvelope(BaseModel):
    data: RecordingOut
