"""The alert store and its outbox: SQLite by default, PostgreSQL by URL.

Alerts, every CAP message and every acknowledgement are written here *before* anything is
published. Each message to publish is an outbox row in the same transaction as the alert
change that made it; a publisher takes pending rows in order and marks them published only
after the broker confirmed them, so a broker outage delays messages but loses none and
never reorders them.

URLs: ``sqlite:///path/to/alerts.db`` (or a plain path, or ``:memory:``) and
``postgresql://user:pass@host:port/db``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS alerts (
        identifier TEXT PRIMARY KEY, hazard TEXT NOT NULL, level INTEGER NOT NULL, state TEXT NOT NULL,
        raised_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
        cancelled_at DOUBLE PRECISION, cells TEXT NOT NULL, last_message TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS messages (
        seq {serial}, alert_id TEXT NOT NULL, identifier TEXT NOT NULL UNIQUE, msg_type TEXT NOT NULL,
        sent TEXT NOT NULL, body TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS outbox (
        seq {serial}, key TEXT UNIQUE, topic TEXT NOT NULL, payload BYTEA, retain INTEGER NOT NULL,
        qos INTEGER NOT NULL, created_at DOUBLE PRECISION NOT NULL, published_at DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS acks (
        seq {serial}, alert_id TEXT NOT NULL, actor TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
        t DOUBLE PRECISION NOT NULL, recorded_at DOUBLE PRECISION NOT NULL, UNIQUE (alert_id, actor, status, t))""",
    """CREATE TABLE IF NOT EXISTS arrivals (
        alert_id TEXT NOT NULL, unit_id TEXT NOT NULL, t DOUBLE PRECISION NOT NULL,
        seconds_after_alert DOUBLE PRECISION NOT NULL, PRIMARY KEY (alert_id, unit_id))""",
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS silences (
        id TEXT PRIMARY KEY, matchers TEXT NOT NULL, starts_at DOUBLE PRECISION NOT NULL,
        ends_at DOUBLE PRECISION NOT NULL, created_by TEXT NOT NULL, comment TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, expired_at DOUBLE PRECISION, expired_by TEXT, expired_comment TEXT)""",
    """CREATE TABLE IF NOT EXISTS silence_audit (
        seq {serial}, silence_id TEXT NOT NULL, action TEXT NOT NULL, actor TEXT NOT NULL,
        t DOUBLE PRECISION NOT NULL, comment TEXT NOT NULL, before_state TEXT, after_state TEXT,
        recorded_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (published_at, seq)",
    """CREATE TABLE IF NOT EXISTS case_events (
        seq {serial}, key TEXT NOT NULL UNIQUE, case_id TEXT NOT NULL, n INTEGER NOT NULL, kind TEXT NOT NULL,
        t DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL, reason TEXT NOT NULL, data TEXT NOT NULL,
        recorded_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS case_events_case ON case_events (case_id, seq)",
    """CREATE TABLE IF NOT EXISTS reports (
        id TEXT PRIMARY KEY, source TEXT NOT NULL, source_id TEXT NOT NULL, case_id TEXT, category TEXT NOT NULL,
        t DOUBLE PRECISION NOT NULL, lon DOUBLE PRECISION NOT NULL, lat DOUBLE PRECISION NOT NULL,
        body TEXT NOT NULL, recorded_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS indicators (
        t DOUBLE PRECISION NOT NULL, node TEXT NOT NULL, res TEXT NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (node, t))""",
    "CREATE INDEX IF NOT EXISTS indicators_t ON indicators (t)",
    "CREATE INDEX IF NOT EXISTS indicators_res_t ON indicators (res, t)",
    """CREATE TABLE IF NOT EXISTS layer_frames (
        t DOUBLE PRECISION NOT NULL, name TEXT NOT NULL, body BYTEA NOT NULL, PRIMARY KEY (name, t))""",
    "CREATE INDEX IF NOT EXISTS layer_frames_t ON layer_frames (t)",
    "CREATE INDEX IF NOT EXISTS messages_alert ON messages (alert_id, seq)",
    "CREATE INDEX IF NOT EXISTS acks_alert ON acks (alert_id, seq)",
    "CREATE INDEX IF NOT EXISTS alerts_raised ON alerts (raised_at)",
)
"""The tables and indexes, created when missing (an existing database keeps its tables and gains the new indexes;
``arrivals`` is looked up by alert through its primary key)."""
ID_CHUNK = 500
"""Alert ids per ``IN (...)`` query of `Store.messages_for` and its siblings (far below SQLite's 32,766 bound
parameters and PostgreSQL's 65,535) [design]."""
CASE_EVENT_COLUMNS = ("key", "case_id", "n", "kind", "t", "actor", "reason", "data")
"""What `Store.append_case_events` takes of each event (``data`` a dict, stored as JSON; ``case`` for
``case_id`` is accepted too: `twin.cases.model.CaseEvent.to_row`)."""
REPORT_COLUMNS = ("id", "source", "source_id", "case_id", "category", "t", "lon", "lat", "body")
"""What `Store.record_report` takes (``body`` a dict, stored as JSON; ``case_id`` may be None)."""
INDICATOR_TICK_KEEP_S = 3600.0
"""The vital signs' tick rows (``res`` ``t``) are kept this long, then only the minute rows (``res`` ``m``: the first
tick of each minute) [issue 18: tick resolution for an hour]. [s]"""
INDICATOR_KEEP_S = 86400.0
"""The minute rows of the vital signs are kept this long [issue 18: 24 hours]. [s]"""
FRAME_KEEP_S = 3600.0
"""Stored level frames are kept this long (the page's timeline covers the last hour) [issue 18]. [s]"""


@dataclass(frozen=True)
class OutboxItem:
    """One message waiting to be published."""

    seq: int
    topic: str
    payload: bytes | None
    retain: bool
    qos: int


class Store:
    """Alert store over a DB-API connection (one writer; calls are serialised by a lock)."""

    def __init__(self, connect, placeholder: str, serial: str, blob: str, url: str) -> None:
        self._connect, self._ph, self.url = connect, placeholder, url
        self._lock = threading.RLock()
        self.enqueued = 0
        """Outbox rows this store object added (or tried to: a replayed key adds none) [1]; the outbox publisher
        is woken when it grows."""
        self._conn = connect()
        with self._tx() as cur:
            for stmt in SCHEMA:
                cur.execute(stmt.format(serial=serial).replace("BYTEA", blob))

    # ------------------------------------------------------------ plumbing
    @classmethod
    def open(cls, url: str | Path) -> Store:
        """Open (creating the tables if needed) the store at a URL or SQLite path."""
        url = str(url)
        if url.startswith(("postgresql://", "postgres://")):
            import psycopg

            return cls(lambda: psycopg.connect(url, autocommit=True), "%s", "BIGSERIAL PRIMARY KEY", "BYTEA", url)
        path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

        def connect():
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            return conn

        return cls(connect, "?", "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB", url)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _q(self, sql: str) -> str:
        return sql.replace("?", self._ph)

    def _all(self, sql: str, args: Iterable = ()) -> list[tuple]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute(self._q(sql), tuple(args))
            return cur.fetchall()

    # ------------------------------------------------------------ writes
    def record(self, alert: dict, message: dict, outbox: list[tuple[str, bytes | None, bool]]) -> bool:
        """Store an alert's new state, its CAP message and the messages to publish, atomically.

        ``alert``: identifier, hazard, level, state, raised_at, updated_at, cancelled_at, cells.
        ``outbox``: (topic, payload or None to clear a retained message, retain) in publish order.
        A message already stored (a replay after a restart) changes nothing; returns False then.
        """
        now = time.time()
        if self._all("SELECT 1 FROM messages WHERE identifier = ?", (message["identifier"],)):
            return False
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM alerts WHERE identifier = ?"), (alert["identifier"],))
            cur.execute(self._q("INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"), (
                alert["identifier"], alert["hazard"], alert["level"], alert["state"], alert["raised_at"],
                alert["updated_at"], alert.get("cancelled_at"), json.dumps(alert["cells"]), json.dumps(message)))
            cur.execute(self._q("INSERT INTO messages (alert_id, identifier, msg_type, sent, body) "
                                "VALUES (?, ?, ?, ?, ?)"),
                        (alert["identifier"], message["identifier"], message["msgType"], message["sent"],
                         json.dumps(message)))
            for k, (topic, payload, retain) in enumerate(outbox):
                self._enqueue(cur, f"{message['identifier']}#{k}", topic, payload, retain, now)
        return True

    def enqueue(self, items: list[tuple[str, bytes | None, bool]], key: str | None = None) -> None:
        """Add messages to publish (topic, payload or None, retain), in order.

        With ``key``, each item is stored once under ``key#i`` (replaying the same event adds nothing).
        """
        now = time.time()
        with self._tx() as cur:
            for k, (topic, payload, retain) in enumerate(items):
                self._enqueue(cur, f"{key}#{k}" if key else None, topic, payload, retain, now)

    def _enqueue(self, cur, key: str | None, topic: str, payload: bytes | None, retain: bool, now: float) -> None:
        self.enqueued += 1
        cur.execute(self._q("INSERT INTO outbox (key, topic, payload, retain, qos, created_at) "
                            "VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT DO NOTHING"),
                    (key, topic, payload, int(retain), now))

    def mark_published(self, seq: int) -> None:
        """The broker confirmed outbox row ``seq``."""
        with self._tx() as cur:
            cur.execute(self._q("UPDATE outbox SET published_at = ? WHERE seq = ?"), (time.time(), seq))

    def record_ack(self, alert_id: str, actor: str, kind: str, status: str, t: float) -> None:
        """An acknowledgement: ``kind`` is ``unit`` or ``operator``; ``status`` ack/on_scene/resolved.
        The same (alert, actor, status, time) is kept once."""
        with self._tx() as cur:
            cur.execute(self._q("INSERT INTO acks (alert_id, actor, kind, status, t, recorded_at) "
                                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                        (alert_id, actor, kind, status, t, time.time()))

    def record_arrival(self, alert_id: str, unit_id: str, t: float, seconds_after_alert: float) -> bool:
        """A unit seen inside an alert's area for the first time. Returns False if already recorded."""
        if self._all("SELECT 1 FROM arrivals WHERE alert_id = ? AND unit_id = ?", (alert_id, unit_id)):
            return False
        with self._tx() as cur:
            cur.execute(self._q("INSERT INTO arrivals VALUES (?, ?, ?, ?)"),
                        (alert_id, unit_id, t, seconds_after_alert))
        return True

    def set_meta(self, key: str, value: str) -> None:
        """Keep a small named value (e.g. the alert sequence counter)."""
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM meta WHERE key = ?"), (key,))
            cur.execute(self._q("INSERT INTO meta VALUES (?, ?)"), (key, value))

    def write_silence(self, silence: dict, action: str, actor: str, t: float, comment: str,
                      before: dict | None) -> None:
        """Store a silence's new state and its audit row (``action`` create / expire; ``before``: its state before,
        None for a new one), atomically. ``silence``: the columns of the ``silences`` table, ``matchers`` a list."""
        cols = ("id", "matchers", "starts_at", "ends_at", "created_by", "comment", "created_at", "expired_at",
                "expired_by", "expired_comment")
        values = tuple(json.dumps(silence["matchers"]) if c == "matchers" else silence.get(c) for c in cols)
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM silences WHERE id = ?"), (silence["id"],))
            cur.execute(self._q(f"INSERT INTO silences ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"),
                        values)
            cur.execute(self._q("INSERT INTO silence_audit (silence_id, action, actor, t, comment, before_state, "
                                "after_state, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                        (silence["id"], action, actor, t, comment, None if before is None else json.dumps(before),
                         json.dumps(silence), time.time()))

    def append_case_events(self, events: list[dict]) -> int:
        """Append case events (`CASE_EVENT_COLUMNS`), in order, atomically; returns how many rows were added. An
        event whose key is already stored adds nothing (a replay after a restart writes nothing twice)."""
        now, added = time.time(), 0
        sql = self._q(f"INSERT INTO case_events ({', '.join(CASE_EVENT_COLUMNS)}, recorded_at) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
        with self._tx() as cur:
            for e in events:
                cur.execute(sql, (e["key"], e["case_id"] if "case_id" in e else e["case"], int(e["n"]), e["kind"],
                                  float(e["t"]), e["actor"], e.get("reason") or "",
                                  json.dumps(e.get("data") or {}, ensure_ascii=False, sort_keys=True), now))
                added += max(cur.rowcount, 0)
        return added

    def record_report(self, row: dict) -> bool:
        """Store a citizen report (`REPORT_COLUMNS`); returns False (and changes nothing) if its id is stored."""
        values = tuple(json.dumps(row["body"], ensure_ascii=False, sort_keys=True) if c == "body" else row.get(c)
                       for c in REPORT_COLUMNS)
        with self._tx() as cur:
            cur.execute(self._q(f"INSERT INTO reports ({', '.join(REPORT_COLUMNS)}, recorded_at) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                        (*values, time.time()))
            return cur.rowcount > 0

    def set_report_case(self, report_id: str, case_id: str) -> bool:
        """Link a stored report to a case; False if there is no such report."""
        with self._tx() as cur:
            cur.execute(self._q("UPDATE reports SET case_id = ? WHERE id = ?"), (case_id, report_id))
            return cur.rowcount > 0

    def record_vitals(self, t: float, res: str, indicators: dict[str, str], frames: dict[str, bytes]) -> None:
        """One tick of the city's vital signs (issue 18), atomically: one ``indicators`` row per node given
        (``indicators``: node id -> JSON body; ``res`` ``t`` for a tick row, ``m`` for the first tick of a minute, kept
        longer) and one ``layer_frames`` row per level frame given (name -> compressed bytes). The caller
        (`twin.live.vitals.Vitals.tick`) gives every node at a minute row and, at other ticks, only the nodes and
        frames that changed: the reads take the last row at or before a time. A row already stored for that node
        (frame) and time is kept as it is (a replay after a restart writes nothing twice).

        These rows are derived data (a replay of the raw log writes them again), so their commit does not wait for the
        disk: SQLite commits them with ``synchronous=NORMAL`` (in WAL mode: durable at the next checkpoint or at the
        next full commit, e.g. an alert's), PostgreSQL with ``synchronous_commit`` off; an fsync every tick would cost
        a few milliseconds a tick."""
        sqlite = self._ph == "?"
        with self._lock:
            if sqlite:
                self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self._write_vitals(t, res, indicators, frames, sqlite)
            finally:
                if sqlite:
                    self._conn.execute("PRAGMA synchronous=FULL")

    def _write_vitals(self, t: float, res: str, indicators: dict[str, str], frames: dict[str, bytes],
                      sqlite: bool) -> None:
        with self._tx() as cur:
            if not sqlite:
                cur.execute("SET LOCAL synchronous_commit TO OFF")
            if indicators:
                cur.executemany(self._q("INSERT INTO indicators (t, node, res, body) VALUES (?, ?, ?, ?) "
                                        "ON CONFLICT DO NOTHING"),
                                [(float(t), node, res, body) for node, body in indicators.items()])
            if frames:
                cur.executemany(self._q("INSERT INTO layer_frames (t, name, body) VALUES (?, ?, ?) "
                                        "ON CONFLICT DO NOTHING"),
                                [(float(t), name, body) for name, body in frames.items()])

    def prune_vitals(self, now: float, tick_keep_s: float = INDICATOR_TICK_KEEP_S,
                     keep_s: float = INDICATOR_KEEP_S, frame_keep_s: float = FRAME_KEEP_S) -> None:
        """Thin the vital signs at twin time ``now`` [unix s]: tick rows older than ``tick_keep_s`` [s] go (the minute
        rows stay; the ``indicators_res_t`` index finds them without walking the day of minute rows), every row older
        than ``keep_s`` [s] goes, and frames older than ``frame_keep_s`` [s] except, per name, the last one at or
        before that limit (frames are stored only when they change: it is the frame of the hour's first times)."""
        frame_limit = float(now) - frame_keep_s
        with self._tx() as cur:
            # from the oldest tick row (an index lookup): the range is about a minute of rows, so PostgreSQL's planner
            # too walks the index over that minute, not the day of minute rows under ``t < limit``
            cur.execute("SELECT MIN(t) FROM indicators WHERE res = 't'")
            oldest = cur.fetchone()[0]
            if oldest is not None:
                cur.execute(self._q("DELETE FROM indicators WHERE res = 't' AND t >= ? AND t < ?"),
                            (float(oldest), float(now) - tick_keep_s))
            cur.execute(self._q("DELETE FROM indicators WHERE t < ?"), (float(now) - keep_s,))
            cur.execute(self._q("SELECT name, MAX(t) FROM layer_frames WHERE t <= ? GROUP BY name"), (frame_limit,))
            for name, last in cur.fetchall():
                cur.execute(self._q("DELETE FROM layer_frames WHERE name = ? AND t < ?"), (name, float(last)))

    # ------------------------------------------------------------ reads
    def pending(self, limit: int = 1000) -> list[OutboxItem]:
        """Unpublished outbox rows, oldest first."""
        rows = self._all("SELECT seq, topic, payload, retain, qos FROM outbox WHERE published_at IS NULL "
                         "ORDER BY seq LIMIT ?", (limit,))
        return [OutboxItem(int(s), t, bytes(p) if p is not None else None, bool(r), int(q)) for s, t, p, r, q in rows]

    def outbox_depth(self) -> int:
        """How many messages wait to be published."""
        return int(self._all("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")[0][0])

    def alerts(self, state: str | None = None) -> list[dict]:
        """Stored alerts (``state`` active / cancelled to filter), oldest first, with their last message and
        their cells (flat indices) at that message."""
        sql = ("SELECT identifier, hazard, level, state, raised_at, updated_at, cancelled_at, last_message, cells "
               "FROM alerts")
        rows = self._all(sql + (" WHERE state = ?" if state else "") + " ORDER BY raised_at, identifier",
                         (state,) if state else ())
        return [self._alert_row(r) for r in rows]

    def alerts_between(self, since: float, until: float, limit: int = 500) -> list[dict]:
        """The alerts alive at some time of [``since``, ``until``] [unix s, twin time]: raised at or before ``until``
        and not cancelled before ``since`` (``cancelled_at`` null or >= ``since``), newest raised first, at most
        ``limit``; the same dicts as `alerts`. Selected in SQL (the ``alerts_raised`` index)."""
        sql = ("SELECT identifier, hazard, level, state, raised_at, updated_at, cancelled_at, last_message, cells "
               "FROM alerts WHERE raised_at <= ? AND (cancelled_at IS NULL OR cancelled_at >= ?) "
               "ORDER BY raised_at DESC, identifier DESC LIMIT ?")
        return [self._alert_row(r) for r in self._all(sql, (float(until), float(since), max(int(limit), 0)))]

    @staticmethod
    def _alert_row(r: tuple) -> dict:
        keys = ("identifier", "hazard", "level", "state", "raised_at", "updated_at", "cancelled_at")
        return {**dict(zip(keys, r[:7], strict=True)), "message": json.loads(r[7]), "cells": json.loads(r[8])}

    def _by_alert(self, sql: str, ids: Iterable[str], order: str) -> dict[str, list[tuple]]:
        """{alert id: [the rest of each row]} of ``SELECT alert_id, ... FROM ... WHERE alert_id IN (...)`` for the
        given ids (`ID_CHUNK` a query), rows of each alert in ``order``; every id given is a key."""
        ids = list(dict.fromkeys(str(i) for i in ids))
        out: dict[str, list[tuple]] = {i: [] for i in ids}
        for k in range(0, len(ids), ID_CHUNK):
            chunk = ids[k:k + ID_CHUNK]
            rows = self._all(f"{sql} WHERE alert_id IN ({', '.join('?' * len(chunk))}) ORDER BY alert_id, {order}",
                             chunk)
            for r in rows:
                out[r[0]].append(r[1:])
        return out

    def messages_for(self, ids: Iterable[str]) -> dict[str, list[dict]]:
        """`messages` of many alerts: {alert id: its CAP messages in order} (one ``IN`` query per `ID_CHUNK` ids;
        an id without messages maps to [])."""
        rows = self._by_alert("SELECT alert_id, body FROM messages", ids, "seq")
        return {i: [json.loads(r[0]) for r in rs] for i, rs in rows.items()}

    def acks_for(self, ids: Iterable[str]) -> dict[str, list[dict]]:
        """`acks` of many alerts: {alert id: its acknowledgements in the order received}."""
        rows = self._by_alert("SELECT alert_id, actor, kind, status, t FROM acks", ids, "seq")
        return {i: [dict(zip(("actor", "kind", "status", "t"), r, strict=True)) for r in rs] for i, rs in rows.items()}

    def arrivals_for(self, ids: Iterable[str]) -> dict[str, list[dict]]:
        """`arrivals` of many alerts: {alert id: its units on scene, by time}."""
        rows = self._by_alert("SELECT alert_id, unit_id, t, seconds_after_alert FROM arrivals", ids, "t")
        return {i: [dict(zip(("unit_id", "t", "seconds_after_alert"), r, strict=True)) for r in rs]
                for i, rs in rows.items()}

    def messages(self, alert_id: str) -> list[dict]:
        """Every CAP message of an alert, in order."""
        rows = self._all("SELECT body FROM messages WHERE alert_id = ? ORDER BY seq", (alert_id,))
        return [json.loads(r[0]) for r in rows]

    def acks(self, alert_id: str) -> list[dict]:
        """Acknowledgements of an alert, in the order received."""
        rows = self._all("SELECT actor, kind, status, t FROM acks WHERE alert_id = ? ORDER BY seq", (alert_id,))
        return [dict(zip(("actor", "kind", "status", "t"), r, strict=True)) for r in rows]

    def arrivals(self, alert_id: str) -> list[dict]:
        """Units recorded on scene for an alert."""
        rows = self._all("SELECT unit_id, t, seconds_after_alert FROM arrivals WHERE alert_id = ? ORDER BY t",
                         (alert_id,))
        return [dict(zip(("unit_id", "t", "seconds_after_alert"), r, strict=True)) for r in rows]

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """A value kept with `set_meta`."""
        rows = self._all("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def silences(self) -> list[dict]:
        """Every stored silence (its ``matchers`` a list of dicts), oldest first."""
        cols = ("id", "matchers", "starts_at", "ends_at", "created_by", "comment", "created_at", "expired_at",
                "expired_by", "expired_comment")
        rows = self._all(f"SELECT {', '.join(cols)} FROM silences ORDER BY created_at, id")
        return [{**dict(zip(cols, r, strict=True)), "matchers": json.loads(r[1])} for r in rows]

    def silence_audit(self, silence_id: str | None = None, limit: int = 1000) -> list[dict]:
        """The audit trail of silences (of one, with ``silence_id``), newest ``limit`` rows, oldest first:
        silence_id, action, actor, t [unix s, twin time], comment, before and after (dicts, before None on create)."""
        where, args = (" WHERE silence_id = ?", (silence_id,)) if silence_id else ("", ())
        rows = self._all("SELECT silence_id, action, actor, t, comment, before_state, after_state FROM silence_audit"
                         + where + " ORDER BY seq DESC LIMIT ?", (*args, int(limit)))
        keys = ("silence_id", "action", "actor", "t", "comment")
        return [{**dict(zip(keys, r[:5], strict=True)), "before": None if r[5] is None else json.loads(r[5]),
                 "after": None if r[6] is None else json.loads(r[6])} for r in reversed(rows)]

    def case_events(self, case_id: str | None = None) -> list[dict]:
        """Stored case events (of one case, with ``case_id``) in the order written: seq, key, case_id, n, kind,
        t [unix s, twin time], actor, reason, data (a dict), recorded_at [unix s, wall clock]."""
        cols = ("seq", *CASE_EVENT_COLUMNS, "recorded_at")
        where, args = (" WHERE case_id = ?", (case_id,)) if case_id is not None else ("", ())
        rows = self._all(f"SELECT {', '.join(cols)} FROM case_events" + where + " ORDER BY seq", args)
        return [{**dict(zip(cols, r, strict=True)), "data": json.loads(r[8])} for r in rows]

    def report(self, report_id: str) -> dict | None:
        """One stored report (``body`` a dict), or None."""
        rows = self._all(f"SELECT {', '.join(REPORT_COLUMNS)}, recorded_at FROM reports WHERE id = ?", (report_id,))
        return self._report_row(rows[0]) if rows else None

    def reports(self, case_id: str | None = None) -> list[dict]:
        """Stored reports (of one case, with ``case_id``), oldest first (by report time, then id)."""
        where, args = (" WHERE case_id = ?", (case_id,)) if case_id is not None else ("", ())
        rows = self._all(f"SELECT {', '.join(REPORT_COLUMNS)}, recorded_at FROM reports" + where
                         + " ORDER BY t, id", args)
        return [self._report_row(r) for r in rows]

    def indicators_at(self, at: float) -> tuple[float | None, dict[str, str]]:
        """The vital signs as they were at ``at`` [unix s]: each node's last stored row at or before ``at`` (rows are
        stored when a node changes, and for every node once a minute); (the newest of those rows' times, {node: JSON
        body}); (None, {}) when none is stored. Only the rows since the last minute row at or before ``at`` are read
        (every node has one there)."""
        at = float(at)
        minute = self._all("SELECT MAX(t) FROM indicators WHERE res = 'm' AND t <= ?", (at,))[0][0]
        rows = self._all("SELECT i.node, i.t, i.body FROM indicators i JOIN (SELECT node, MAX(t) AS t FROM indicators "
                         "WHERE t >= ? AND t <= ? GROUP BY node) newest ON i.node = newest.node AND i.t = newest.t",
                         (float(minute) if minute is not None else -1e300, at))
        if not rows:
            return None, {}
        return max(float(t) for _, t, _ in rows), {node: body for node, _, body in rows}

    def indicator_rows(self, node: str, since: float, until: float) -> list[tuple[float, str]]:
        """(t, JSON body) of one node's stored vital signs with ``since`` <= t <= ``until`` [unix s], oldest first."""
        rows = self._all("SELECT t, body FROM indicators WHERE node = ? AND t >= ? AND t <= ? ORDER BY t",
                         (node, float(since), float(until)))
        return [(float(t), b) for t, b in rows]

    def indicator_samples(self, since: float, until: float) -> list[tuple[float, str, str]]:
        """(t, node, JSON body) of the minute rows with ``since`` <= t < ``until`` [unix s], oldest first (the trend
        memory of the vital signs after a restart)."""
        rows = self._all("SELECT t, node, body FROM indicators WHERE res = 'm' AND t >= ? AND t < ? ORDER BY t, node",
                         (float(since), float(until)))
        return [(float(t), n, b) for t, n, b in rows]

    def indicator_count(self, res: str | None = None) -> int:
        """Stored vital-sign rows (of one resolution, ``t`` or ``m``)."""
        where, args = (" WHERE res = ?", (res,)) if res else ("", ())
        return int(self._all("SELECT COUNT(*) FROM indicators" + where, args)[0][0])

    def frame_times(self, name: str, since: float) -> list[float]:
        """Times of the stored frames of one level layer at or after ``since`` [unix s], oldest first."""
        rows = self._all("SELECT t FROM layer_frames WHERE name = ? AND t >= ? ORDER BY t", (name, float(since)))
        return [float(r[0]) for r in rows]

    def vital_times(self, since: float) -> list[float]:
        """The distinct times at or after ``since`` [unix s] at which a level frame (any name) or a node's indicators
        were stored, oldest first (the vital signs' timeline: a time whenever something changed, and one a minute)."""
        rows = self._all("SELECT t FROM layer_frames WHERE t >= ? UNION SELECT t FROM indicators WHERE t >= ? "
                         "ORDER BY t", (float(since), float(since)))
        return [float(r[0]) for r in rows]

    def frame_at(self, name: str, at: float) -> tuple[float, bytes] | None:
        """(t, compressed bytes) of the last stored frame of a level layer at or before ``at`` [unix s], or None."""
        rows = self._all("SELECT t, body FROM layer_frames WHERE name = ? AND t <= ? ORDER BY t DESC LIMIT 1",
                         (name, float(at)))
        return (float(rows[0][0]), bytes(rows[0][1])) if rows else None

    @staticmethod
    def _report_row(r: tuple) -> dict:
        out = dict(zip((*REPORT_COLUMNS, "recorded_at"), r, strict=True))
        out["body"] = json.loads(out["body"])
        return out
