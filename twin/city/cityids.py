"""City alert identifiers: issued from the anchor, never twice, read back after a restart (docs/guides/city-tier.md).

A city alert's identifier derives from its *anchor*, the earliest-raised member it started from:
``citytwin.{district}.{hazard}.{YYYYMMDDTHHMMSSZ}.{nnnnn}`` becomes ``citytwin.city.{district}.{hazard}...``
(``.r2``, ``.r3`` ... if that one was already used, `IssuedIdentifiers`). Later messages are ``{id}.update{n}``
and ``{id}.cancel{n}`` as in the district profile (docs/contract/cap.md).

After a restart the merger *adopts* its retained city alerts of the previous run (`adopted_city`): identifier,
anchor, message count and members, all read from the message (identifier and ``references``).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

from twin.alerting import cap
from twin.city.cityalert import DEFAULT_SENDER, CityAlert
from twin.city.districtalert import alert_key, alert_level, parameter, raised_time

CITY_PREFIX = "citytwin.city."
"""Start of every city alert identifier."""
MAX_USED_IDS = 100_000
"""City identifiers remembered so that none is issued twice (oldest forgotten first)."""
_RERUN = re.compile(r"\.r\d+$")
_COUNT = re.compile(r"\.(update|cancel)(\d+)$")


class IssuedIdentifiers:
    """The city identifiers issued or adopted so far (the newest `MAX_USED_IDS`), so that none is issued twice."""

    def __init__(self) -> None:
        self._used: OrderedDict[str, None] = OrderedDict()

    def issue(self, anchor_key: str) -> str:
        """A new city identifier for a city alert anchored on the district alert ``anchor_key``."""
        base = CITY_PREFIX + anchor_key.removeprefix("citytwin.")
        cid, k = base, 1
        while cid in self._used:
            k += 1
            cid = f"{base}.r{k}"
        self.remember(cid)
        return cid

    def remember(self, cid: str) -> None:
        """Mark ``cid`` as used (forgetting the oldest beyond `MAX_USED_IDS`)."""
        self._used[cid] = None
        while len(self._used) > MAX_USED_IDS:
            self._used.popitem(last=False)


def adopted_city(message: dict, city_sender: str) -> CityAlert:
    """A city alert of an earlier run from its retained message (not a Cancel; identifier under `CITY_PREFIX`):
    its anchor from the identifier, its members from the references not sent by ``city_sender``, and the count of
    its messages from the ``.update{n}``/``.cancel{n}`` suffix."""
    cid = alert_key(message["identifier"])
    member = "citytwin." + _RERUN.sub("", cid.removeprefix(CITY_PREFIX))
    refs = {}
    for ref in str(message.get("references") or "").split():
        sender, identifier, _ = [*ref.split(","), "", "", ""][:3]
        if sender != city_sender and identifier:
            refs[alert_key(identifier)] = ref
    match = _COUNT.search(message["identifier"])
    raised = raised_time(member)
    city = CityAlert(cid, (math.inf if raised is None else raised, member), refs,
                     int(match.group(2)) + 1 if match else 1, message)
    info = cap.info_block(message, "en-US")
    city.hazard, city.level = parameter(info, "hazard") or "", alert_level(info)
    return city


def members_of(message: dict, city_sender: str = DEFAULT_SENDER) -> list[str]:
    """The district alert keys a city message references (its own previous messages left out)."""
    out = []
    for ref in str(message.get("references") or "").split():
        parts = ref.split(",")
        if len(parts) == 3 and parts[0] != city_sender:
            out.append(alert_key(parts[1]))
    return list(dict.fromkeys(out))
