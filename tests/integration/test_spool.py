"""The spool inside a running daemon: resends answered once, refused data in dead letters,
and a damaged spool reported and replayed around at startup."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests import payloads as p
from tests.conftest import RunningDaemon, make_config
from tidegate.intake import request_hash
from tidegate.spool import Spool, SpoolRecord

POINTS = 50


def gauge_request(name: str, points: int = POINTS) -> bytes:
    values = [p.number_point(float(i), {"i": i}) for i in range(points)]
    return p.request([p.gauge(name, values)]).SerializeToString()


def stored_points(daemon: RunningDaemon) -> dict[str, int]:
    rows = daemon.query(
        """SELECT s.metric_name, sum(c.point_count) AS n FROM point_chunks c
           JOIN series s ON s.id = c.series_id GROUP BY 1"""
    )
    return {r["metric_name"]: r["n"] for r in rows}


def sample(daemon: RunningDaemon, name: str, labels: dict[str, str]) -> float | None:
    value: float | None = daemon.daemon.telemetry.registry.get_sample_value(name, labels)
    return value


def test_a_resent_request_is_acknowledged_again_and_stored_once(
    database_dsn: str, tmp_path: Path
) -> None:
    config = make_config(database_dsn, tmp_path)
    request = gauge_request("resent")
    daemon = RunningDaemon(config)
    try:
        first = p.export(daemon.grpc_target, request)
        again = p.export(daemon.grpc_target, request)
        assert first == again
        duplicates = {"signal": "metrics"}
        assert sample(daemon, "tidegate_duplicate_requests_total", duplicates) == 1
        daemon.flush()
        assert stored_points(daemon) == {"resent": POINTS}
    finally:
        daemon.stop()
    # A client whose answer was lost in a crash resends to the next daemon: still once.
    daemon = RunningDaemon(config)
    try:
        p.export(daemon.grpc_target, request)
        assert sample(daemon, "tidegate_duplicate_requests_total", duplicates) == 1
        p.export(daemon.grpc_target, gauge_request("resent", POINTS + 1))  # other bytes
        daemon.flush()
        assert stored_points(daemon) == {"resent": 2 * POINTS + 1}
    finally:
        daemon.stop()


REFUSE_POISON = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM series WHERE id = NEW.series_id AND metric_name = 'poison') THEN
        RAISE EXCEPTION 'poison refused' USING ERRCODE = '22023';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON point_chunks
    FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""


def test_data_postgresql_refuses_goes_to_dead_letters_and_what_follows_is_stored(
    database_dsn: str, tmp_path: Path
) -> None:
    daemon = RunningDaemon(make_config(database_dsn, tmp_path))
    try:
        # A value PostgreSQL refuses for good, as a constraint would (SQLSTATE class 22).
        daemon.execute(REFUSE_POISON)
        poison = gauge_request("poison")
        p.export(daemon.grpc_target, poison)
        daemon.flush()
        p.export(daemon.grpc_target, gauge_request("after"))
        daemon.flush()

        assert stored_points(daemon) == {"after": POINTS}
        letters = daemon.query(
            "SELECT sink, seqs, reason, payload, tenant FROM tidegate_dead_letters"
        )
        assert len(letters) == 1
        assert letters[0]["sink"] == "metrics"
        assert letters[0]["seqs"] == [1]
        assert "storage_rejected" in letters[0]["reason"]
        assert "poison refused" in letters[0]["reason"]
        assert bytes(letters[0]["payload"]) == poison  # the request as the client sent it
        assert letters[0]["tenant"] == "default"  # whose it is, to resend it as theirs
        assert sample(daemon, "tidegate_dead_letters_total", {"sink": "metrics"}) == 1
        dropped = {"reason": "storage_rejected"}
        assert sample(daemon, "tidegate_points_dropped_total", dropped) == POINTS
    finally:
        daemon.stop()


def test_a_damaged_spool_is_reported_and_every_intact_record_replayed(
    database_dsn: str, tmp_path: Path
) -> None:
    requests = [gauge_request(f"spooled{i}", 3) for i in range(5)]

    async def write() -> None:
        spool = Spool(tmp_path / "spool" / "metrics")
        for seq, body in enumerate(requests, start=1):
            record = SpoolRecord(seq, time.time_ns(), "", request_hash("metrics", "", body), body)
            await spool.append(record)
        await spool.close()

    asyncio.run(write())
    (segment,) = (tmp_path / "spool" / "metrics").glob("*.seg")
    data = bytearray(segment.read_bytes())
    at = data.index(b"spooled2")
    data[at] ^= 0xFF  # record 3 fails its CRC
    torn = b"\x31\x52\x47\x54\x40\x00"  # a record cut short by a crash
    segment.write_bytes(bytes(data) + torn)

    daemon = RunningDaemon(make_config(database_dsn, tmp_path))
    try:
        damaged = {"signal": "metrics", "kind": "corrupt_record"}
        assert sample(daemon, "tidegate_spool_damaged_total", damaged) == 1
        torn_bytes = {"signal": "metrics", "kind": "torn_tail_byte"}
        assert sample(daemon, "tidegate_spool_damaged_total", torn_bytes) == len(torn)
        replayed = {"signal": "metrics", "mode": "full"}
        assert sample(daemon, "tidegate_spool_replayed_records_total", replayed) == 4
        daemon.flush()
        assert stored_points(daemon) == {f"spooled{i}": 3 for i in (0, 1, 3, 4)}
        # New requests get numbers above the recovered ones, and are stored too.
        p.export(daemon.grpc_target, gauge_request("new", 2))
        daemon.flush()
        assert stored_points(daemon)["new"] == 2
    finally:
        daemon.stop()
