"""Alert merging across district borders: district CAP alerts in, city CAP alerts out (docs/guides/city-tier.md).

`AlertMerger` keeps the active district alerts (a ``Cancel`` removes one) and, on every change, regroups them and
works out which city alerts go on, start, take in others, or end:

- **Grouping** (`twin.city.grouping`): alerts of one hazard from different districts whose areas lie within
  ``tolerance_m`` (10 m, one cell, by default) are linked; a city alert is a connected group of linked alerts.
- **Identifiers** (`twin.city.cityids`): a city alert's identifier derives from its *anchor*, its earliest-raised
  member. When groups join, the city alert with the earliest anchor goes on (an Update) and the others are
  cancelled (``merged into {id}``); a new member raised earlier than every anchor of its group counts as the
  anchor of a new city alert, exactly as if it had arrived first. So without cancellations the identifiers do not
  depend on the order the district alerts arrived in (the tests check it). When a group splits, the city alert
  stays with the part holding its earliest member and the other parts become new city alerts.
- **Updates and cancels.** A city alert gets an Update whenever its members or their messages change, and a Cancel
  when its last member is cancelled (``all district alerts cleared``) or it is merged into another. The messages
  themselves are composed in `twin.city.citycap`.

Restarts: a merger may start in *hold* mode, take in the retained district alerts and its own retained city alerts
of the previous run (`AlertMerger.adopt`) and only then publish (`AlertMerger.release`): city alerts that are still
backed go on with their identifiers and message counts, those whose members are gone are cancelled.

Bad input is never dropped silently: `AlertMerger.rejected` counts every refused message by reason
(`twin.city.districtalert.REASONS`).

Where the parts live (their public names are re-exported here):

- `twin.city.districtalert`: a district CAP message checked and read (`RejectedError` and its reasons);
- `twin.city.capgeometry`: CAP areas in metres and back to CAP polygons;
- `twin.city.grouping`: which district alerts touch across a border;
- `twin.city.cityalert`: the city alert, its context and the updates to publish;
- `twin.city.cityids`: city identifiers, and the adoption of retained city alerts after a restart;
- `twin.city.citycap`: the CAP messages of a city alert;
- here, `AlertMerger`: the bookkeeping, which district alerts form which city alert, and its lifecycle.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from twin.alerting import cap
from twin.city.capgeometry import SIMPLIFY_M, cap_area
from twin.city.cityalert import DEFAULT_SENDER, CityAlert, CityContext, CityUpdate, fill_from_members
from twin.city.citycap import MAX_GEOCODES, MAX_PLACES, cancel_city, compose_city, member_place
from twin.city.cityids import CITY_PREFIX, MAX_USED_IDS, IssuedIdentifiers, adopted_city, members_of
from twin.city.districtalert import (
    REASONS,
    DistrictAlert,
    RejectedError,
    alert_key,
    cap_seconds,
    district_alert,
    load_message,
    raised_time,
)
from twin.city.grouping import DEFAULT_TOLERANCE_M, group_alerts
from twin.district.grid import DEFAULT_CRS

__all__ = [
    "CITY_PREFIX", "DEFAULT_CRS", "DEFAULT_SENDER", "DEFAULT_TOLERANCE_M", "MAX_ACTIVE", "MAX_GEOCODES", "MAX_PLACES",
    "MAX_USED_IDS", "REASONS", "SIMPLIFY_M", "AlertMerger", "CityAlert", "CityContext", "CityUpdate", "DistrictAlert",
    "RejectedError", "alert_key", "cancel_city", "cap_area", "cap_seconds", "compose_city", "district_alert",
    "group_alerts", "load_message", "member_place", "members_of", "raised_time",
]

MAX_ACTIVE = 100_000
"""Active district alerts held at most; a new one beyond is refused (``too_many``)."""
_ALL_CLEARED = {"zh-CN": "各区预警均已解除", "en-US": "all district alerts cleared"}


class AlertMerger:
    """Keeps the active district alerts and turns each change into city CAP messages (module docstring).

    Parameters
    ----------
    context : CityContext
        Sender and district names.
    tolerance_m : float
        Areas closer than this are linked. [m]
    crs : str
        Projected CRS the areas are compared in.
    hold : bool
        Start in hold mode: take messages in, publish nothing until `release`.
    """

    def __init__(self, context: CityContext | None = None, tolerance_m: float = DEFAULT_TOLERANCE_M,
                 crs: str = DEFAULT_CRS, hold: bool = False) -> None:
        if not (tolerance_m >= 0 and math.isfinite(tolerance_m)):
            raise ValueError(f"tolerance_m must be a finite number >= 0, got {tolerance_m!r}")
        self.context = context or CityContext()
        self.tolerance_m, self.crs, self.holding = tolerance_m, crs, hold
        self.active: dict[str, DistrictAlert] = {}
        self.cities: dict[str, CityAlert] = {}
        self.rejected: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        """``accepted``, ``cancelled``, ``cancel_unknown``, ``removed``, ``adopted``, ``city_messages``."""
        self._ids = IssuedIdentifiers()

    # ------------------------------------------------------------ input
    def accept(self, payload: bytes | str | dict, now: float) -> list[CityUpdate]:
        """Take one district message (``now`` [unix s] dates the city messages); the city messages it causes.
        A message that cannot be used raises `RejectedError` (counted in `rejected`)."""
        try:
            message = load_message(payload)
            if message["msgType"] == "Cancel":
                return self._cancel_member(alert_key(message["identifier"]), message, now)
            alert = district_alert(message, self.crs)
            if alert.key not in self.active and len(self.active) >= MAX_ACTIVE:
                raise RejectedError("too_many", f"{MAX_ACTIVE} district alerts are active already")
        except RejectedError as exc:
            self.rejected[exc.reason] += 1
            raise
        self.counts["accepted"] += 1
        self.active[alert.key] = alert
        return self._changed(now, {})

    def remove(self, key: str, now: float) -> list[CityUpdate]:
        """An alert whose retained message was removed without a Cancel seen (its topic emptied)."""
        alert = self.active.pop(key, None)
        if alert is None:
            return []
        self.counts["removed"] += 1
        return self._changed(now, {})

    def _cancel_member(self, key: str, message: dict, now: float) -> list[CityUpdate]:
        if self.active.pop(key, None) is None:
            self.counts["cancel_unknown"] += 1
            return []
        self.counts["cancelled"] += 1
        return self._changed(now, {key: cap.reference(message)})

    def adopt(self, payload: bytes | str | dict, now: float) -> list[CityUpdate]:
        """A retained city alert of an earlier run (its identifier, message count, members from its references);
        ignored when known or a Cancel. Outside hold mode, a city alert no longer backed is cancelled at once."""
        try:
            message = load_message(payload)
        except RejectedError:
            self.rejected["not_cap"] += 1
            raise
        cid = alert_key(message["identifier"])
        if message["msgType"] == "Cancel" or cid in self.cities or not cid.startswith(CITY_PREFIX):
            return []
        self.cities[cid] = adopted_city(message, self.context.sender)
        self._ids.remember(cid)
        self.counts["adopted"] += 1
        return self._changed(now, {})

    def release(self, now: float) -> list[CityUpdate]:
        """Leave hold mode: the city messages of everything taken in meanwhile."""
        self.holding = False
        return self._changed(now, {})

    # ------------------------------------------------------------ output
    def city_alerts(self) -> list[CityAlert]:
        """The active city alerts, by anchor."""
        return sorted(self.cities.values(), key=lambda c: c.anchor)

    def _changed(self, now: float, gone: dict[str, str]) -> list[CityUpdate]:
        if self.holding:
            return []
        out = self._recompute(now, gone)
        self.counts["city_messages"] += len(out)
        return out

    def _recompute(self, now: float, gone: dict[str, str]) -> list[CityUpdate]:
        groups = group_alerts(self.active.values(), self.tolerance_m)
        where = {a.key: gi for gi, g in enumerate(groups) for a in g}
        homes: dict[int, list[CityAlert]] = defaultdict(list)
        cleared = []
        for city in self.city_alerts():
            alive = [k for k in city.refs if k in where]
            if alive:
                homes[where[min(alive, key=lambda k: self.active[k].order)]].append(city)
            else:
                cleared.append(city)
        out: list[CityUpdate] = []
        for gi, group in enumerate(groups):
            candidates = homes.get(gi, [])
            claimed = {k for c in candidates for k in c.refs}
            loose = [a for a in group if a.key not in claimed]
            if not candidates or (loose and loose[0].order < candidates[0].anchor):
                winner, absorbed = self._new_city(loose[0]), candidates
            else:
                winner, absorbed = candidates[0], candidates[1:]
            out += self._publish(winner, group, absorbed, now, gone)
        for city in cleared:
            out.append(self._cancel(city, now, _ALL_CLEARED, [gone[k] for k in city.refs if k in gone]))
        return out

    def _new_city(self, first: DistrictAlert) -> CityAlert:
        return CityAlert(self._ids.issue(first.key), first.order)

    def _publish(self, city: CityAlert, group: list[DistrictAlert], absorbed: list[CityAlert], now: float,
                 gone: dict[str, str]) -> list[CityUpdate]:
        refs = {a.key: a.reference for a in group}
        if city.messages and refs == city.refs and not absorbed:
            return []
        left = [gone[k] for k in city.refs if k in gone]
        previous = [cap.reference(city.last)] if city.last else []
        extra = [cap.reference(c.last) for c in absorbed if c.last]
        city.refs = refs
        fill_from_members(city, group)
        message = compose_city(city, group, now, self.context, previous + list(refs.values()) + extra + left)
        self.cities[city.identifier] = city
        out = [CityUpdate(city.identifier, message, False, city.area, dict(city.by_district))]
        note = {"zh-CN": f"已并入预警 {city.identifier}", "en-US": f"merged into {city.identifier}"}
        return out + [self._cancel(c, now, note, []) for c in absorbed]

    def _cancel(self, city: CityAlert, now: float, why: dict[str, str], left: list[str]) -> CityUpdate:
        message = cancel_city(city, now, why, left)
        del self.cities[city.identifier]
        return CityUpdate(city.identifier, message, True, city.area, dict(city.by_district))
