"""Issue 20: a vehicle's or unit's JT/T 808 terminal phone number in the registry (``jt808_phone``)."""

from __future__ import annotations

import pytest

from ingest.registry import (
    RegistryError,
    devices_from_csv,
    load_registry,
    registry_from_geojson,
    terminal_phone,
)


def _vehicle(dev_id: str, **props) -> dict:
    return {"type": "Feature", "geometry": None,
            "properties": {"id": dev_id, "kind": "vehicle", "quantities": ["position"], **props}}


def _collection(*features) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


def test_the_phone_is_compared_without_leading_zeros():
    """A 2013 terminal sends 12 BCD digits, a 2019 one 20: the registry's number is compared without its zeros."""
    reg = registry_from_geojson(_collection(_vehicle("a", jt808_phone="013900000001"), _vehicle("b")))
    assert terminal_phone(reg.get("a")) == "13900000001"
    assert terminal_phone(reg.get("b")) is None


@pytest.mark.parametrize("phone, problem", [
    (13900000001, "text of 1 to 20 digits"),
    ("139-0000-0001", "text of 1 to 20 digits"),
    ("1" * 21, "text of 1 to 20 digits"),
    ("", "text of 1 to 20 digits"),
    ("١٣٩", "text of 1 to 20 digits"),  # Arabic-Indic digits are digits to str.isdigit, not to BCD
])
def test_a_bad_phone_is_refused_with_the_device_named(phone, problem):
    with pytest.raises(RegistryError) as err:
        registry_from_geojson(_collection(_vehicle("veh-x", jt808_phone=phone)))
    assert "device veh-x" in str(err.value) and problem in str(err.value)


def test_two_devices_with_one_terminal_are_refused():
    """``13900000001`` and ``0013900000001`` are the same terminal: the second device is refused, naming the first."""
    with pytest.raises(RegistryError) as err:
        registry_from_geojson(_collection(_vehicle("a", jt808_phone="13900000001"),
                                          _vehicle("b", jt808_phone="0013900000001")))
    assert err.value.problems == ["device b: jt808_phone 13900000001 is already device a's (feature 1)"]


def test_only_movers_have_a_terminal():
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [121.49, 31.24]},
               "properties": {"id": "rain-x", "kind": "rain", "jt808_phone": "1"}}
    with pytest.raises(RegistryError, match="only vehicles and units have a jt808_phone"):
        registry_from_geojson(_collection(feature))


def test_a_csv_phone_stays_text():
    """A CSV cell of digits is read as a number elsewhere; a phone number keeps its leading zeros."""
    devices, problems = devices_from_csv(["id,kind,jt808_phone,fleet_size", "veh-9,vehicle,013900000009,12"])
    assert problems == []
    assert devices[0].properties["jt808_phone"] == "013900000009"
    assert devices[0].properties["fleet_size"] == 12


def test_the_bundled_movers_all_have_a_terminal(bund_sources):
    from twin.district.sources import data_dir

    reg = load_registry(data_dir() / "bund" / "registry.geojson")
    movers = reg.of_kind("vehicle") + reg.of_kind("unit")
    phones = {terminal_phone(d) for d in movers}
    assert len(movers) == 50 and None not in phones and len(phones) == 50
