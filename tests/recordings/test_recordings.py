"""SPEC §5: a bridged sim call becomes a stereo MP3 behind a signed, expiring Range URL."""

from __future__ import annotations

import asyncio
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.clock import ScaledClock
from maskline.recordings.models import Recording
from maskline.recordings.storage import Storage
from maskline.recordings.tasks import LEASE, MAX_ATTEMPTS
from tests.calls.conftest import SPEED, call_settings
from tests.support.api import Api, OrgHandle, ShiftedClock, running_api
from tests.support.audio import decode_mp3, dominant_hz
from tests.support.calls import busy_calls_one_by_one, place, wait_for
from tests.support.statements import statement_times
from tests.support.waits import eventually, eventually_value

PUBLIC_URL = "http://127.0.0.1:8000"
TALK_SEC = 20


async def recorded_call(api: Api, org: OrgHandle, **body: Any) -> dict[str, Any]:
    """Place a call and wait until it has ended and its recording is no longer pending."""
    placed = await place(api, org, **body)
    return await wait_for(api, org, placed["call_sid"])


async def recording_of(api: Api, org: OrgHandle, call_sid: str) -> httpx.Response:
    return await api.client.get(f"/v1/masking/calls/{call_sid}/recording", headers=org.auth)


def local(url: str) -> str:
    """The signed URL as a path for the in-process client."""
    assert url.startswith(PUBLIC_URL)
    return url.removeprefix(PUBLIC_URL)


def error_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


class TestRecording:
    async def test_a_bridged_call_becomes_a_stereo_mp3_with_a_on_the_left(
        self, api: Api, data_dir: Path
    ) -> None:
        org = await api.make_org("rec-stereo", balance="10", numbers=1)
        call = await recorded_call(api, org)
        sid = call["call_sid"]
        assert (call["status"], call["talk_duration_sec"]) == ("completed", TALK_SEC)
        assert call["recording_status"] == "ready"
        assert call["recording_url"] == f"{PUBLIC_URL}/v1/masking/calls/{sid}/recording"

        response = await recording_of(api, org, sid)
        assert response.status_code == 200
        data = response.json()["data"]
        query = parse_qs(urlsplit(data["url"]).query)
        expires = int(query["expires"][0])
        assert data == {
            "call_sid": sid,
            "url": f"{PUBLIC_URL}/v1/masking/recordings/{sid}.mp3"
            f"?expires={expires}&signature={query['signature'][0]}",
            "expires_at": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "duration_sec": TALK_SEC,
            "size_bytes": data["size_bytes"],
            "format": "mp3",
        }
        # Valid for one hour from now (the test clock runs 100 times fast: allow five of
        # its minutes, three real seconds, between signing and this line).
        issued = api.runtime.clock.now()
        assert timedelta(minutes=55) < datetime.fromtimestamp(expires, UTC) - issued
        assert datetime.fromtimestamp(expires, UTC) - issued <= timedelta(hours=1)

        media = await api.client.get(local(data["url"]))
        assert media.status_code == 200
        assert media.headers["content-type"] == "audio/mpeg"
        assert media.headers["accept-ranges"] == "bytes"
        assert len(media.content) == data["size_bytes"] == int(media.headers["content-length"])
        mp3 = media.content
        # MPEG-2 Layer III (16 kHz), opening with a Xing/LAME ("Info") frame.
        assert mp3[:2] == b"\xff\xf3"
        assert mp3[21:25] == b"Info"
        decoded = decode_mp3(mp3)
        assert (decoded.codec, decoded.channels, decoded.rate) == ("mp3float", 2, 16000)
        assert abs(decoded.seconds - TALK_SEC) <= 0.2
        middle = len(decoded.left) // 2
        assert dominant_hz(decoded.left[middle:], 16000) == 440
        assert dominant_hz(decoded.right[middle:], 16000) == 1000
        # The spool is gone once the MP3 is stored.
        assert sorted(p.name for p in (data_dir / "spool").iterdir()) == []
        assert [p.name for p in (data_dir / "recordings" / org.id).iterdir()] == [f"{sid}.mp3"]

    async def test_a_call_cut_short_is_recorded_for_exactly_its_bridge(
        self, database_url: str, data_dir: Path
    ) -> None:
        # The sim's parties would talk an hour; max_duration_sec ends the bridge at 10 s.
        # (With the 20 s talk of the other tests, 10 s is 0.1 real second at SPEED, which
        # a busy machine can lose before the duration timer fires.)
        settings = call_settings(database_url, data_dir, sim_talk_sec=3600)
        async with running_api(settings, clock=ScaledClock(SPEED)) as api:
            org = await api.make_org("rec-cut", balance="10", numbers=1)
            call = await recorded_call(api, org, max_duration_sec=10)
            response = await recording_of(api, org, call["call_sid"])
            data = response.json()["data"]
            decoded = decode_mp3((await api.client.get(local(data["url"]))).content)
        assert (call["hangup_cause"], call["talk_duration_sec"]) == ("ALLOTTED_TIMEOUT", 10)
        assert data["duration_sec"] == 10
        assert abs(decoded.seconds - 10) <= 0.2

    async def test_recordings_and_their_folders_are_private_to_the_service(
        self, api: Api, data_dir: Path
    ) -> None:
        org = await api.make_org("rec-modes", balance="10", numbers=1)
        call = await recorded_call(api, org)
        assert call["recording_status"] == "ready"
        stored = data_dir / "recordings" / org.id / f"{call['call_sid']}.mp3"
        modes = {
            path: stat.S_IMODE(path.stat().st_mode)
            for path in (stored, stored.parent, stored.parent.parent, data_dir / "spool")
        }
        assert modes == {
            stored: 0o600,
            stored.parent: 0o700,
            stored.parent.parent: 0o700,
            data_dir / "spool": 0o700,
        }

    @pytest.mark.slow
    async def test_the_raw_audio_of_a_live_call_is_private_to_the_service(
        self, database_url: str, data_dir: Path
    ) -> None:
        settings = call_settings(database_url, data_dir, sim_talk_sec=3600)
        async with running_api(settings, clock=ScaledClock(SPEED)) as api:
            org = await api.make_org("rec-spool-modes", balance="10", numbers=1)
            placed = await place(api, org)
            sid = placed["call_sid"]
            await wait_for(api, org, sid, ("in-progress",))
            spool = data_dir / "spool"
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in spool.glob(f"{sid}.*")}
            await api.client.post(f"/v1/masking/calls/{sid}/hangup", headers=org.auth)
            await wait_for(api, org, sid)
        assert modes == {f"{sid}.a.pcm": 0o600, f"{sid}.b.pcm": 0o600}
        assert stat.S_IMODE(spool.stat().st_mode) == 0o700

    async def test_audio_lost_from_the_spool_is_a_failed_recording_not_silence(
        self, database_url: str, data_dir: Path
    ) -> None:
        # SPEC §5: `failed` is for a fault of maskline itself. The recorder creates both
        # spool files at the bridge, so a missing one is audio maskline lost (e.g. an
        # engine and a worker that do not share MASKLINE_DATA_DIR), not a silent leg.
        settings = call_settings(database_url, data_dir, sim_talk_sec=3600)
        async with running_api(settings, clock=ScaledClock(SPEED)) as api:
            org = await api.make_org("rec-lost", balance="10", numbers=1)
            sid = (await place(api, org))["call_sid"]
            await wait_for(api, org, sid, ("in-progress",))
            for path in (data_dir / "spool").glob(f"{sid}.*.pcm"):
                path.unlink()
            await api.client.post(f"/v1/masking/calls/{sid}/hangup", headers=org.auth)
            call = await wait_for(api, org, sid)
            assert (call["status"], call["recording_status"]) == ("completed", "failed")
            assert error_of(await recording_of(api, org, sid)) == (404, "not_found")

    async def test_recording_ready_is_the_last_event_and_carries_the_url(self, api: Api) -> None:
        org = await api.make_org("rec-event", balance="10", numbers=1)
        call = await recorded_call(api, org)

        async def fetch() -> list[dict[str, Any]]:
            data: list[dict[str, Any]] = (
                await api.client.get("/v1/events", headers=org.auth)
            ).json()["data"]
            return [e for e in data if e["call_sid"] == call["call_sid"]]

        # The feed gives an event its cursor after the commit (SPEC §6): wait for the last.
        feed = await eventually_value(
            fetch,
            lambda events: any(e["event"] == "recording.ready" for e in events),
            what="recording.ready in the feed",
            within=10,
            interval=0.05,
        )
        events = [(e["event"], e["sequence"]) for e in feed]
        assert events == [
            ("call.initiated", 1),
            ("call.ringing", 2),
            ("call.answered", 3),
            ("call.bridged", 4),
            ("call.completed", 5),
            ("recording.ready", 6),
        ]
        ready = feed[-1]["data"]
        assert (ready["recording_status"], ready["recording_url"]) == (
            "ready",
            call["recording_url"],
        )

    async def test_the_worker_claims_at_most_once_a_second_while_events_stream(
        self, api: Api
    ) -> None:
        """Every committed event wakes the recording worker, and few are a recording's: its
        claim rounds come at most once a second (SETTLE_SEC), and a recorded call is still
        encoded."""
        org = await api.make_org("rec-rounds", balance="100", numbers=2)
        loop = asyncio.get_running_loop()

        def claim(statement: str) -> bool:
            text = statement.lstrip()
            # The lease of the due ones (``lease_statement``), on either database.
            return text.startswith("UPDATE recordings") and "IN (SELECT" in text

        with statement_times(api, claim) as claims:
            started = loop.time()
            # Spread over a few seconds: wake-ups 0.1 s apart or less.
            await busy_calls_one_by_one(api, org, 20, gap_sec=0.1)
            elapsed = loop.time() - started
            streamed = len(claims)
        assert streamed <= elapsed + 2, (streamed, elapsed)
        call = await recorded_call(api, org)
        assert call["recording_status"] == "ready"

    async def test_the_url_is_set_from_the_bridge_so_call_completed_carries_it(
        self, api: Api
    ) -> None:
        org = await api.make_org("rec-url-early", balance="10", numbers=1)
        call = await recorded_call(api, org)
        url = f"{PUBLIC_URL}/v1/masking/calls/{call['call_sid']}/recording"

        async def feed() -> dict[str, str | None]:
            events = (await api.client.get("/v1/events", headers=org.auth)).json()["data"]
            return {e["event"]: e["data"]["recording_url"] for e in events}

        # The feed gives an event its cursor after the commit (SPEC §6): wait for the last.
        urls = await eventually_value(
            feed,
            lambda urls: "recording.ready" in urls,
            what="recording.ready in the feed",
            within=10,
            interval=0.05,
        )
        assert urls == {
            "call.initiated": None,
            "call.ringing": None,
            "call.answered": None,
            "call.bridged": url,
            "call.completed": url,
            "recording.ready": url,
        }

    async def test_record_false_records_nothing(self, api: Api, data_dir: Path) -> None:
        org = await api.make_org("rec-off", balance="10", numbers=1)
        call = await recorded_call(api, org, record=False)
        assert (call["status"], call["record"], call["recording_status"]) == (
            "completed",
            False,
            "none",
        )
        assert call["recording_url"] is None
        assert error_of(await recording_of(api, org, call["call_sid"])) == (404, "not_found")
        assert not (data_dir / "recordings").exists()
        assert list((data_dir / "spool").glob(f"{call['call_sid']}*")) == []

    async def test_a_call_that_never_bridged_has_no_recording(self, api: Api) -> None:
        org = await api.make_org("rec-busy", balance="10", numbers=1)
        call = await recorded_call(api, org, party_b="9123450001")
        assert (call["status"], call["recording_status"]) == ("failed", "none")
        assert error_of(await recording_of(api, org, call["call_sid"])) == (404, "not_found")

    async def test_only_the_owner_sees_the_recording(self, api: Api) -> None:
        owner = await api.make_org("rec-owner", balance="10", numbers=1)
        other = await api.make_org("rec-other", balance="10")
        call = await recorded_call(api, owner)
        assert error_of(await recording_of(api, other, call["call_sid"])) == (404, "not_found")
        deleted = await api.client.delete(
            f"/v1/masking/calls/{call['call_sid']}/recording", headers=other.auth
        )
        assert error_of(deleted) == (404, "not_found")
        assert (await recording_of(api, owner, call["call_sid"])).status_code == 200


class TestSignedUrl:
    async def signed(self, api: Api, name: str) -> tuple[str, bytes]:
        org = await api.make_org(name, balance="10", numbers=1)
        call = await recorded_call(api, org)
        url = local((await recording_of(api, org, call["call_sid"])).json()["data"]["url"])
        full = (await api.client.get(url)).content
        return url, full

    async def test_range_requests_return_the_exact_bytes(self, api: Api) -> None:
        url, full = await self.signed(api, "rec-range")
        size = len(full)
        part = await api.client.get(url, headers={"Range": "bytes=100-299"})
        assert part.status_code == 206
        assert part.content == full[100:300]
        assert part.headers["content-range"] == f"bytes 100-299/{size}"
        assert part.headers["content-length"] == "200"
        tail = await api.client.get(url, headers={"Range": "bytes=-64"})
        assert (tail.status_code, tail.content) == (206, full[-64:])
        rest = await api.client.get(url, headers={"Range": f"bytes={size - 10}-"})
        assert (rest.status_code, rest.content) == (206, full[-10:])
        outside = await api.client.get(url, headers={"Range": f"bytes={size}-{size + 100}"})
        assert outside.status_code == 416
        assert outside.json() == {
            "error": {
                "code": "range_not_satisfiable",
                "message": "The requested range is outside the file.",
            }
        }
        assert outside.headers["content-range"] == f"bytes */{size}"

    async def test_tampered_urls_are_forbidden(self, api: Api) -> None:
        url, _ = await self.signed(api, "rec-tamper")
        path, _, query = url.partition("?")
        params = parse_qs(query)
        expires, signature = params["expires"][0], params["signature"][0]
        flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
        other_sid = "d28be7cd-9840-4b23-9627-199f1ef81fc6"
        for tampered in (
            f"{path}?expires={expires}&signature={flipped}",
            f"{path}?expires={int(expires) + 3600}&signature={signature}",
            f"/v1/masking/recordings/{other_sid}.mp3?expires={expires}&signature={signature}",
            f"{path}?expires={expires}",
            path,
            f"{path}?expires={expires}&signature=%C3%A9{signature[2:]}",
            f"{path}?expires={'9' * 40}&signature={signature}",
            f"{path}?expires={expires}&signature={signature * 10}",
        ):
            response = await api.client.get(tampered)
            assert response.json() == {
                "error": {
                    "code": "forbidden",
                    "message": "This recording URL is expired or not valid.",
                }
            }, tampered
            assert response.status_code == 403

    async def test_other_processes_accept_the_url_until_it_expires(
        self, api: Api, database_url: str, data_dir: Path
    ) -> None:
        url, full = await self.signed(api, "rec-expiry")
        settings = call_settings(database_url, data_dir)
        # Another API process with the same secret key (and time) serves it...
        async with running_api(settings, clock=api.runtime.clock, role="api") as peer:
            assert (await peer.client.get(url)).content == full
        # ...and one whose clock is past the hour refuses it.
        later = ShiftedClock(api.runtime.clock, timedelta(hours=1, minutes=5))
        async with running_api(settings, clock=later, role="api") as late:
            expired = await late.client.get(url)
            assert error_of(expired) == (403, "forbidden")


class TestDeletion:
    @pytest.mark.slow
    async def test_delete_removes_the_file_for_good(self, api: Api, data_dir: Path) -> None:
        org = await api.make_org("rec-delete", balance="10", numbers=1)
        call = await recorded_call(api, org)
        sid = call["call_sid"]
        url = local((await recording_of(api, org, sid)).json()["data"]["url"])
        deleted = await api.client.delete(f"/v1/masking/calls/{sid}/recording", headers=org.auth)
        assert (deleted.status_code, deleted.content) == (204, b"")
        after = (await api.client.get(f"/v1/masking/calls/{sid}", headers=org.auth)).json()
        assert (after["data"]["recording_status"], after["data"]["recording_url"]) == (
            "none",
            None,
        )
        assert error_of(await recording_of(api, org, sid)) == (404, "not_found")
        assert error_of(await api.client.get(url)) == (404, "not_found")
        assert list((data_dir / "recordings" / org.id).iterdir()) == []
        again = await api.client.delete(f"/v1/masking/calls/{sid}/recording", headers=org.auth)
        assert error_of(again) == (404, "not_found")

    async def test_retention_deletes_old_recordings(
        self, api: Api, database_url: str, data_dir: Path
    ) -> None:
        org = await api.make_org("rec-retention", balance="10", numbers=1)
        call = await recorded_call(api, org)
        sid = call["call_sid"]
        settings = call_settings(database_url, data_dir, recording_retention_days=2)
        # A day later nothing goes; three days later the worker deletes it by itself.
        day = ShiftedClock(ScaledClock(SPEED), timedelta(days=1))
        async with running_api(settings, clock=day, role="worker") as worker:
            assert worker.runtime.recorder is not None
            await worker.runtime.recorder.apply_retention()
        assert (await recording_of(api, org, sid)).status_code == 200
        later = ShiftedClock(ScaledClock(SPEED), timedelta(days=3))
        async with running_api(settings, clock=later, role="worker"):

            async def deleted() -> bool:
                return (await recording_of(api, org, sid)).status_code != 200

            await eventually(
                deleted, what="retention to delete the recording", within=10, interval=0.05
            )
        after = (await api.client.get(f"/v1/masking/calls/{sid}", headers=org.auth)).json()
        assert after["data"]["recording_status"] == "none"
        assert error_of(await recording_of(api, org, sid)) == (404, "not_found")
        assert list((data_dir / "recordings" / org.id).iterdir()) == []


async def test_deleting_a_recording_not_yet_encoded_removes_its_raw_audio(
    database_url: str, data_dir: Path
) -> None:
    # An engine and an API process, no worker: the recording stays pending.
    settings = call_settings(database_url, data_dir)
    async with (
        running_api(settings, clock=ScaledClock(SPEED), role="engine") as engine,
        running_api(settings, clock=ScaledClock(SPEED), role="api") as api,
    ):
        org = await engine.make_org("rec-unencoded", balance="10", numbers=1)
        placed = await place(api, org)
        sid = placed["call_sid"]

        async def fetch() -> dict[str, Any]:
            body: dict[str, Any] = (
                await api.client.get(f"/v1/masking/calls/{sid}", headers=org.auth)
            ).json()
            return body

        call = await eventually_value(
            fetch,
            lambda call: call["data"]["status"] == "completed",
            what=f"call {sid} completed",
            within=20,
            interval=0.05,
        )
        spooled = sorted(p.name for p in (data_dir / "spool").glob(f"{sid}*"))
        assert spooled == [f"{sid}.a.pcm", f"{sid}.b.pcm"]
        assert call["data"]["recording_status"] == "pending"
        deleted = await api.client.delete(f"/v1/masking/calls/{sid}/recording", headers=org.auth)
        assert deleted.status_code == 204
        assert list((data_dir / "spool").glob(f"{sid}*")) == []
        after = (await api.client.get(f"/v1/masking/calls/{sid}", headers=org.auth)).json()
        assert after["data"]["recording_status"] == "none"


async def test_a_file_that_could_not_be_removed_is_swept_by_the_worker(
    api: Api, data_dir: Path
) -> None:
    org = await api.make_org("rec-sweep", balance="10", numbers=1)
    call = await recorded_call(api, org)
    sid = call["call_sid"]
    stored = data_dir / "recordings" / org.id / f"{sid}.mp3"
    # Make the removal fail once: the file's place is taken by a directory.
    stored.unlink()
    stored.mkdir()
    deleted = await api.client.delete(f"/v1/masking/calls/{sid}/recording", headers=org.auth)
    assert deleted.status_code == 204
    assert error_of(await recording_of(api, org, sid)) == (404, "not_found")
    assert stored.is_dir()
    # Once removal works again, the worker's next pass removes what was left.
    stored.rmdir()
    stored.write_bytes(b"left behind")
    recorder = api.runtime.recorder
    assert recorder is not None
    await recorder.apply_retention()
    assert not stored.exists()


class HeldStorage:
    """The workers' storage, holding every ``put`` until the test lets it go: an encode
    that lasts as long as the test wants, however fast the machine."""

    def __init__(self, inner: Storage) -> None:
        self._inner = inner
        self.puts: list[str] = []
        self.release = threading.Event()

    def put(self, key: str, source: Path) -> int:
        self.puts.append(key)
        if not self.release.wait(timeout=60):
            raise TimeoutError("the test never released the storage")
        return self._inner.put(key, source)

    def local_path(self, key: str) -> Path | None:
        return self._inner.local_path(key)

    def delete(self, key: str) -> None:
        self._inner.delete(key)


@pytest.mark.slow
async def test_an_encode_that_outlasts_its_lease_is_not_taken_by_another_worker(
    database_url: str, data_dir: Path
) -> None:
    # Two workers; whichever claims the recording holds it, in `put`, for longer than the
    # job's lease (10 minutes, six real seconds at this speed). Its lease is renewed while
    # it works: the other worker never claims the job, and it is stored once.
    settings = call_settings(database_url, data_dir)
    async with (
        running_api(settings, clock=ScaledClock(SPEED)) as api,
        running_api(settings, clock=ScaledClock(SPEED), role="worker") as peer,
    ):
        held = HeldStorage(api.runtime.storage)
        for runtime in (api.runtime, peer.runtime):
            assert runtime.recorder is not None
            runtime.recorder.storage = held
        try:
            org = await api.make_org("rec-lease", balance="10", numbers=1)
            sid = (await place(api, org))["call_sid"]
            await eventually(lambda: held.puts, what="the recording being stored", within=20)
            # Past the lease the first claim took, and past the other worker's next round
            # (every real second) after that.
            clock = api.runtime.clock
            lapsed = clock.now() + LEASE + timedelta(seconds=2 * SPEED)
            await eventually(lambda: clock.now() >= lapsed, what="the lease's end", within=20)
            stored = list(held.puts)
        finally:
            held.release.set()
        call = await wait_for(api, org, sid)
    assert stored == [f"{org.id}/{sid}.mp3"]
    assert held.puts == stored
    assert (call["status"], call["recording_status"]) == ("completed", "ready")


async def test_a_recording_whose_every_attempt_died_with_its_worker_fails(
    database_url: str, data_dir: Path
) -> None:
    # An API and an engine, no worker: the call ends with its recording pending and its
    # audio spooled. Its row is then left as a worker killed during its last attempt
    # leaves it (every attempt counted, the lease lapsed); the next worker to start fails
    # it (it will never be encoded) and discards the audio, instead of leaving the call
    # pending for ever.
    settings = call_settings(database_url, data_dir)
    clock = ScaledClock(SPEED)
    async with (
        running_api(settings, clock=clock, role="api") as api,
        running_api(settings, clock=clock, role="engine") as engine,
    ):
        org = await api.make_org("rec-died", balance="10", numbers=1)
        sid = (await place(api, org))["call_sid"]

        async def fetch() -> dict[str, Any]:
            response = await api.client.get(f"/v1/masking/calls/{sid}", headers=org.auth)
            data: dict[str, Any] = response.json()["data"]
            return data

        ended = await eventually_value(
            fetch, lambda d: d["status"] == "completed", what="the call's end", within=60
        )
        assert ended["recording_status"] == "pending"
        assert engine.runtime.recorder is None
        spooled = engine.runtime.spool.paths(sid)
        assert all(path.exists() for path in spooled.values())

        async def die(session: AsyncSession) -> None:
            await session.execute(
                update(Recording)
                .where(Recording.call_sid == sid)
                .values(
                    attempts=MAX_ATTEMPTS,
                    lease_owner="rec_gone",
                    lease_expires_at=clock.now() - timedelta(minutes=1),
                )
            )

        await api.runtime.db.transaction(die)
        async with running_api(settings, clock=clock, role="worker"):
            settled = await wait_for(api, org, sid)
        assert (settled["status"], settled["recording_status"]) == ("completed", "failed")
        # The stable URL stays (SPEC §3) and answers 404: there is no recording.
        assert settled["recording_url"] == f"{PUBLIC_URL}/v1/masking/calls/{sid}/recording"
        assert error_of(await recording_of(api, org, sid)) == (404, "not_found")
        assert [path.exists() for path in spooled.values()] == [False, False]
