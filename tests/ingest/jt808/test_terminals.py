"""Terminals: phone → device from the registry (leading zeros, retired, refreshed), and authentication codes
(issue, check, revoke; kept across a restart by the state file)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.jt808.terminals import Terminals
from ingest.registry import Device, Registry, phone_key


def device(dev_id: str, phone: object, status: str = "active") -> Device:
    return Device(dev_id, "vehicle", ("position",), properties={"id": dev_id, "jt808_phone": phone}, status=status)


def registry() -> Registry:
    devices = [
        device("bus-1", "13912345678"),
        device("bus-2", "013912345679"),
        device("twin", "0013912345678"),
    ]
    return Registry({d.id: d for d in devices}, retired={"old": device("old", "137", "retired")})


def test_phones_compare_without_leading_zeros():
    t = Terminals(registry())
    assert t.lookup("013912345678").device_id == "bus-1"
    assert t.lookup("00000000013912345678").device_id == "bus-1"  # 2019: 20 digits
    assert t.lookup("13912345679").device_id == "bus-2"
    assert (t.lookup("000000000137").device_id, t.lookup("137").status) == ("old", "retired")
    assert t.lookup("999").status == "unknown" and not t.lookup("999").active
    assert (t.duplicate_phones, len(t)) == (1, 3)
    assert t.has_device("bus-2") and not t.has_device("old") and not t.has_device("twin")
    assert phone_key("0000") == "0"


def test_a_registry_change_is_seen():
    reg = registry()
    t = Terminals(reg)
    assert t.lookup("555").status == "unknown"
    reg.apply([device("bus-3", "555"), device("bus-1", "13912345678", "retired")], version=7)
    assert t.lookup("555").device_id == "bus-3"
    assert t.lookup("13912345679").status == "active"
    assert t.lookup("13912345678").device_id == "twin"  # the active device with the phone wins over the retired
    reg.apply([device("bus-2", "013912345679", "retired")], version=8)
    assert (t.lookup("13912345679").device_id, t.lookup("13912345679").status) == ("bus-2", "retired")


def test_codes_are_issued_checked_and_revoked():
    t = Terminals(registry())
    assert not t.check("13912345678", "anything")  # nothing issued yet
    code = t.issue("013912345678")
    assert t.issue("13912345678") == code and t.check("00000000013912345678", code.lower())
    assert not t.check("13912345679", code)
    t.revoke("13912345678")
    assert not t.check("13912345678", code)
    fresh = t.issue("13912345678")
    assert fresh != code and t.check("13912345678", fresh)


def test_codes_survive_a_restart_with_the_state_file(tmp_path):
    path = tmp_path / "jt808.sqlite"
    first = Terminals(registry(), state_path=path)
    code = first.issue("13912345678")
    revoked = first.issue("13912345679")
    first.revoke("13912345679")
    first.close()
    second = Terminals(registry(), state_path=path)
    assert second.check("13912345678", code) and not second.check("13912345679", revoked)
    assert not Terminals(registry()).check("13912345678", code)  # another secret, in memory


@given(st.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_no_guessed_code_passes(guess):
    t = Terminals(registry(), secret=b"k" * 32)
    code = t.issue("13912345678")
    assert t.check("13912345678", guess) == (guess.strip().upper() == code)
