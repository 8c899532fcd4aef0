"""The device registry over HTTP: ``/api/devices`` (docs/guides/devices.md, docs/contract/http.md).

The service is the API tests' real, never-started `LiveService` (tests/api/conftest.py): a change is stored in the
registry database and applied through the raw log on the caller's thread, so the answer comes after the admission
sees it, as on a running twin (tests/live/test_registry_live.py runs one over a real broker).
"""

from __future__ import annotations

from ingest.batch import Batch
from ingest.decoders.senml import encode_senml
from tests.api.conftest import T0, TOKEN, client_for

AUTH = {"Authorization": f"Bearer {TOKEN}"}
GAUGE = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [121.4890, 31.2380]},
         "properties": {"id": "rain-new-01", "kind": "rain", "quantities": ["rain"], "name": "新雨量计 new gauge"}}


def _rain(driver, device: str, t: float) -> None:
    driver.message(f"city/sensors/rain/{device}", encode_senml(Batch.build(1, device=device, t=t, quantity="rain",
                                                                           value=12.0)), t)


def _moved(lon: float, **props) -> dict:
    return {**GAUGE, "geometry": {"type": "Point", "coordinates": [lon, 31.2380]},
            "properties": {**GAUGE["properties"], **props}}


def test_a_device_is_registered_changed_and_retired_and_its_messages_follow(service, driver):
    metrics = service.ingestor.metrics
    with client_for(service, token=TOKEN) as api:
        _rain(driver, "rain-new-01", T0)
        assert metrics.snapshot()["rejected"]["unknown_device"] == 1
        r = api.post("/api/devices", json=GAUGE, headers=AUTH)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["id"] == "rain-new-01" and body["registry"]["status"] == "active"
        assert body["registry"]["version"] == body["registry"]["added"] == 85 and body["properties"] == GAUGE[
            "properties"]
        accepted = metrics.snapshot()["accepted"]
        _rain(driver, "rain-new-01", T0 + 1)
        assert metrics.snapshot()["accepted"] == accepted + 1, "its next message is admitted"
        readings = service.core.state.readings["rain"]
        assert readings.latest("rain")[0][readings.index["rain-new-01"]] == 12.0
        again = api.post("/api/devices", json=GAUGE, headers=AUTH)
        assert again.status_code == 409 and again.json()["error"] == "device_exists"
        moved = api.put("/api/devices/rain-new-01", json=_moved(121.4895), headers=AUTH)
        assert moved.status_code == 200 and moved.json()["registry"]["version"] == 86
        same = api.put("/api/devices/rain-new-01", json=_moved(121.4895), headers=AUTH)
        assert same.status_code == 200 and same.json()["registry"]["version"] == 86, "nothing differs: no version"
        kind = api.put("/api/devices/rain-new-01", json=_moved(121.4895, kind="water", quantities=["depth"]),
                       headers=AUTH)
        assert kind.status_code == 409 and kind.json()["error"] == "kind_change"
        other = api.put("/api/devices/rain-new-01", json=_moved(121.4895, id="rain-other"), headers=AUTH)
        assert other.status_code == 400 and "path's" in other.json()["detail"]
        assert api.put("/api/devices/nobody", json=_moved(121.4895, id="nobody"), headers=AUTH).status_code == 404
        gone = api.delete("/api/devices/rain-new-01", headers=AUTH)
        assert gone.status_code == 200 and gone.json()["registry"] == {
            "status": "retired", "version": 87, "added": 85, "updated_at": gone.json()["registry"]["updated_at"]}
        twice = api.delete("/api/devices/rain-new-01", headers=AUTH)
        assert twice.status_code == 409 and twice.json()["error"] == "already_retired"
        assert api.delete("/api/devices/nobody", headers=AUTH).json()["error"] == "unknown_device"
        _rain(driver, "rain-new-01", T0 + 2)
        assert metrics.snapshot()["rejected"]["retired_device"] == 1, "a retired device's message is refused"
        shown = api.get("/api/devices/rain-new-01", params={"history": True}).json()
        assert [(h["version"], h["op"], h["status"]) for h in shown["history"]] == [
            (85, "add", "active"), (86, "update", "active"), (87, "retire", "retired")]
        assert shown["history"][1]["geometry"]["coordinates"][0] == 121.4895 and shown["history"][0]["actor"] == "api"
        assert [f["id"] for f in api.get("/api/devices", params={"status": "retired"}).json()["features"]] == [
            "rain-new-01"]
        back = api.put("/api/devices/rain-new-01", json=GAUGE, headers=AUTH)
        assert back.status_code == 200 and back.json()["registry"]["status"] == "active", "registered again"
        _rain(driver, "rain-new-01", T0 + 3)
        assert metrics.snapshot()["accepted"] == accepted + 2


def test_the_list_is_paged_and_filtered(service):
    with client_for(service, token=TOKEN) as api:
        everything = api.get("/api/devices").json()
        assert everything["type"] == "FeatureCollection" and everything["total"] == 84 == len(everything["features"])
        assert everything["version"] == everything["applied"] == 84 and everything["next"] is None
        page = api.get("/api/devices", params={"kind": "water", "limit": 4}).json()
        assert [f["id"] for f in page["features"]] == ["water-01", "water-02", "water-03", "water-04"]
        assert page["total"] == 6 and page["next"] == "water-04"
        rest = api.get("/api/devices", params={"kind": "water", "limit": 4, "after": page["next"]}).json()
        assert [f["id"] for f in rest["features"]] == ["water-05", "water-06"] and rest["next"] is None
        assert api.get("/api/devices", params={"kind": "satellite"}).status_code == 422
        one = api.get("/api/devices/loop-01").json()
        assert one["properties"]["road"] == "East Zhongshan No. 1 Road" and one["registry"]["updated_at"] > 0
        missing = api.get("/api/devices/nobody")
        assert missing.status_code == 404 and missing.json()["error"] == "unknown_device"


def test_an_invalid_feature_is_refused_with_every_problem(service):
    bad = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [121.49, 95.0]},
           "properties": {"id": "x1", "kind": "rain", "quantities": ["colour"], "walkable_area_m2": 3}}
    with client_for(service, token=TOKEN) as api:
        r = api.post("/api/devices", json=bad, headers=AUTH)
        assert r.status_code == 400 and r.json()["error"] == "invalid_device"
        problems = r.json()["detail"]
        assert {p["where"] for p in problems} == {"device x1"}
        assert len(problems) == 3 and any("quantities" in p["problem"] for p in problems)
        assert api.post("/api/devices", json=[1, 2], headers=AUTH).status_code == 422
        nan = api.post("/api/devices", content=b'{"type": "Feature", "geometry": null, "properties": {"id": "v9", '
                       b'"kind": "vehicle", "speed": NaN}}', headers={**AUTH, "Content-Type": "application/json"})
        assert nan.status_code == 400 and "NaN" in nan.json()["detail"][0]["problem"]
        assert api.get("/api/devices").json()["version"] == 84, "nothing stored"


def test_writes_need_the_token(service):
    with client_for(service, token=TOKEN) as api:
        assert api.post("/api/devices", json=GAUGE).status_code == 401
        wrong = api.delete("/api/devices/rain-01", headers={"Authorization": "Bearer wrong-token-000"})
        assert wrong.status_code == 403
    with client_for(service) as read_only:
        refused = read_only.put("/api/devices/rain-01", json=GAUGE, headers=AUTH)
        assert refused.status_code == 403 and refused.json()["error"] == "writes_disabled"
        assert read_only.get("/api/devices/rain-01").status_code == 200
    assert service.registry.get("rain-01") is not None and service.registry.version == 84
