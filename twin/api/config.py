"""Settings of the HTTP API (`ApiConfig`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
"""Host names a browser uses for a server on IPv4 loopback (for the Host-header check; Starlette's check
cannot parse IPv6 literals, so a server on ``::1`` goes without it)."""


@dataclass(frozen=True)
class ApiConfig:
    """How the HTTP API behaves.

    Attributes
    ----------
    token : str or None
        Bearer token that writes (``POST /api/alerts/{id}/ack``) must carry. Without one, writes are
        refused (403): the API then only reads.
    cors_origins : tuple of str
        Origins allowed to call the API from a browser page served elsewhere (CORS). Empty: CORS
        is off and only same-origin pages (the dashboard at ``/``) use the API. The same list
        admits cross-origin WebSocket clients on ``/ws``.
    allowed_hosts : tuple of str or None
        Host headers accepted (a defence against DNS rebinding on loopback); None accepts any.
        `twin.api.serve` sets the loopback names when it listens on loopback.
    max_cells : int
        Largest number of cells one ``/api/layers/{name}`` or PNG response may carry; larger
        requests get 413 and should ask for a ``bbox``.
    ws_queue : int
        Events buffered per WebSocket client; a client that falls this far behind is
        disconnected (close code 1013) and resynchronises on reconnecting.
    unit_tokens : mapping of str to str
        Per field unit, the bearer token of its field page (``/unit``) and its routes
        (``/api/units/{unit}/tasks``...): a unit's token opens only that unit's routes; the dashboard's
        ``token`` opens every unit's. Empty: only the dashboard's token opens them. ``twin run
        --unit-tokens FILE`` fills it.
    open311_keys : tuple of str
        The ``api_key`` values that may post citizen reports to ``POST /open311/v2/requests.json``
        (``twin run --open311-key KEY``, repeatable). Empty: that route refuses every report (403).
    """

    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] | None = None
    max_cells: int = 2_000_000
    ws_queue: int = 1000
    unit_tokens: Mapping[str, str] = field(default_factory=dict)
    open311_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < 8:
            raise ValueError("the API token must be at least 8 characters long")
        if self.max_cells < 1 or self.ws_queue < 1:
            raise ValueError("max_cells and ws_queue must be positive")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        object.__setattr__(self, "unit_tokens", MappingProxyType(_unit_tokens(self.unit_tokens, self.token)))
        object.__setattr__(self, "open311_keys", _open311_keys(self.open311_keys))
        if self.allowed_hosts is not None:
            object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))


UNIT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
"""What a field unit's id may be (the registry's device ids)."""


def _unit_tokens(tokens: Mapping[str, str], dashboard: str | None) -> dict[str, str]:
    """A plain copy of the per-unit tokens, checked: unit ids as in the registry, tokens of at least 8
    characters, each unit's own (no two units share one, none is the dashboard's)."""
    out = dict(tokens)
    for unit, token in out.items():
        if not isinstance(unit, str) or not UNIT_ID.fullmatch(unit):
            raise ValueError(f"unit token for {unit!r}: a unit id is 1 to 64 of A-Z a-z 0-9 . _ : -")
        if not isinstance(token, str) or len(token) < 8:
            raise ValueError(f"the token of unit {unit!r} must be at least 8 characters long")
        if token == dashboard:
            raise ValueError(f"the token of unit {unit!r} is the dashboard's token: give each unit its own")
    if len(set(out.values())) != len(out):
        raise ValueError("two units share a token: give each unit its own")
    return out


def _open311_keys(keys) -> tuple[str, ...]:
    """The Open311 API keys as a tuple, each at least 8 characters."""
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    for key in keys:
        if not isinstance(key, str) or len(key) < 8:
            raise ValueError("an Open311 api_key must be at least 8 characters long")
    return keys
