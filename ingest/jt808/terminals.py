"""JT/T 808 terminals: terminal phone number → registry device, and authentication codes.

A terminal is a registry device whose GeoJSON property ``jt808_phone`` is its terminal phone number (a string of
1–20 digits). Phones compare after stripping leading zeros: JT/T 808-2013 sends 12 BCD digits, 2019 sends 20
(JT/T 808-2019 section 4.4.3).

Authentication codes (JT/T 808-2013 sections 8.5–8.6, 0x8100 / 0x0102): the code of a terminal is
``HMAC-SHA256(secret, terminal + ":" + generation)`` (hex, first `CODE_CHARS` characters). Registration (0x0100)
issues it, authentication (0x0102) checks it, deregistration (0x0003) revokes it: the generation goes up, so
the old code never works again and a later registration issues a new one. Because codes are derived, a gateway
restart keeps them as long as the secret and the generations are kept: ``state_path`` names a small SQLite file
that holds both (without one they live in memory, and a restart asks every terminal to register again).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
from dataclasses import dataclass

from ingest.registry import Registry, phone_key, terminal_phone

CODE_CHARS = 16
"""Length of an authentication code [character] (hex digits of the HMAC)."""


@dataclass(frozen=True)
class Lookup:
    """What the registry says about a terminal: ``status`` is ``active``, ``retired`` or ``unknown``."""

    device_id: str | None
    status: str

    @property
    def active(self) -> bool:
        return self.status == "active"


UNKNOWN = Lookup(None, "unknown")


class _AuthState:
    """Secret and per-terminal generations, in memory or in a SQLite file (one row per terminal). Opened by the thread
    that builds the gateway, used by the gateway's event-loop thread (one at a time: ``check_same_thread`` off)."""

    def __init__(self, path: str | os.PathLike | None, secret: bytes | None) -> None:
        self._db = None if path is None else sqlite3.connect(os.fspath(path), isolation_level=None,
                                                              check_same_thread=False)
        self.generations: dict[str, tuple[int, bool]] = {}
        if self._db is None:
            self.secret = secret or secrets.token_bytes(32)
            return
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS terminals (terminal TEXT PRIMARY KEY, generation INTEGER NOT NULL,"
                         " issued INTEGER NOT NULL)")
        row = self._db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
        if secret is not None:
            self.secret = secret
        elif row is not None:
            self.secret = bytes(row[0])
        else:
            self.secret = secrets.token_bytes(32)
            self._db.execute("INSERT INTO meta (key, value) VALUES ('secret', ?)", (self.secret,))
        for terminal, generation, issued in self._db.execute("SELECT terminal, generation, issued FROM terminals"):
            self.generations[terminal] = (int(generation), bool(issued))

    def set(self, terminal: str, generation: int, issued: bool) -> None:
        self.generations[terminal] = (generation, issued)
        if self._db is not None:
            self._db.execute("INSERT OR REPLACE INTO terminals (terminal, generation, issued) VALUES (?, ?, ?)",
                             (terminal, generation, int(issued)))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _snapshot(devices: dict) -> list:
    """The values of a registry dict that another thread may be changing (``Registry.apply``): copied, and
    copied again if it changed during the copy."""
    for _ in range(10):
        try:
            return list(devices.values())
        except RuntimeError:  # changed size during the copy
            continue
    return list(dict(devices).values())


class Terminals:
    """Phone → device id from a ``Registry`` (re-read when its ``version`` changes, or on ``refresh``), and the
    authentication codes.

    Parameters
    ----------
    registry : Registry
        Devices with a ``jt808_phone`` property are terminals; retired ones are known but refused.
    state_path : path or None
        SQLite file keeping the secret and the code generations across restarts (None: in memory).
    secret : bytes or None
        HMAC key of the codes (None: the one in ``state_path``, or a new random one).
    """

    def __init__(self, registry: Registry, *, state_path: str | os.PathLike | None = None,
                 secret: bytes | None = None) -> None:
        self.registry = registry
        self._auth = _AuthState(state_path, secret)
        self._by_terminal: dict[str, Lookup] = {}
        self._devices: set[str] = set()
        self._seen_version: int | None = None
        self.duplicate_phones = 0
        """Devices whose phone another device already has (the first one keeps it) [1]."""
        self.refresh()

    def refresh(self, registry: Registry | None = None) -> None:
        """Re-read the phone numbers (of ``registry`` when given, which then replaces the old one)."""
        if registry is not None:
            self.registry = registry
        by_terminal: dict[str, Lookup] = {}
        duplicates = 0
        for status, devices in (("active", self.registry.devices), ("retired", self.registry.retired)):
            for device in _snapshot(devices):
                key = terminal_phone(device)  # checked by the registry (`ingest.registry`): 1 to 20 digits
                if key is None:
                    continue
                if key in by_terminal:
                    duplicates += 1
                    continue
                by_terminal[key] = Lookup(device.id, status)
        self._by_terminal, self.duplicate_phones = by_terminal, duplicates
        self._devices = {lk.device_id for lk in by_terminal.values() if lk.active}
        self._seen_version = self.registry.version

    def _fresh(self) -> None:
        if self.registry.version != self._seen_version:
            self.refresh()

    def lookup(self, phone: str) -> Lookup:
        """The device of a terminal phone (as sent, or stripped of leading zeros)."""
        self._fresh()
        return self._by_terminal.get(phone_key(phone), UNKNOWN)

    def has_device(self, device_id: str) -> bool:
        """Whether an active device has a terminal (a ``jt808_phone``)."""
        self._fresh()
        return device_id in self._devices

    def __len__(self) -> int:
        self._fresh()
        return len(self._by_terminal)

    # -- authentication codes -------------------------------------------------------------------------

    def _code(self, key: str, generation: int) -> str:
        mac = hmac.new(self._auth.secret, f"{key}:{generation}".encode(), hashlib.sha256)
        return mac.hexdigest()[:CODE_CHARS].upper()

    def issue(self, phone: str) -> str:
        """The authentication code of a terminal (0x8100), now valid; the same code until it is revoked."""
        key = phone_key(phone)
        generation, issued = self._auth.generations.get(key, (0, False))
        if not issued:
            self._auth.set(key, generation, True)
        return self._code(key, generation)

    def check(self, phone: str, code: str) -> bool:
        """Whether ``code`` is the terminal's issued, unrevoked authentication code (0x0102)."""
        key = phone_key(phone)
        generation, issued = self._auth.generations.get(key, (0, False))
        given = code.strip().upper().encode("utf-8", "replace")
        return issued and hmac.compare_digest(given, self._code(key, generation).encode())

    def revoke(self, phone: str) -> None:
        """Make the terminal's code invalid (0x0003); a later registration issues a new one."""
        key = phone_key(phone)
        generation, _ = self._auth.generations.get(key, (0, False))
        self._auth.set(key, generation + 1, False)

    def close(self) -> None:
        """Close the state file."""
        self._auth.close()
