"""Who holds an instance: the owner record and the take-over rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mqtt_backup.mqtt.owner import Owner, live_holder, refusal, yields_to

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
ME = Owner("nas", 200, T0, "aaaa")


def other(host: str = "pi", pid: int = 100, at: datetime = T0, tag: str = "bbbb") -> Owner:
    return Owner(host, pid, at, tag)


def alive(_pid: int) -> bool:
    return True


def dead(_pid: int) -> bool:
    return False


def test_the_record_round_trips_and_junk_is_no_record() -> None:
    record = other()
    assert Owner.from_json(record.to_json().encode()) == record
    for junk in (b"", b"x", b"{}", b'{"host": "pi", "pid": "x"}', b"[1]"):
        assert Owner.from_json(junk) is None


def test_an_online_owner_on_another_host_holds_the_instance() -> None:
    assert live_holder(ME, other(), b"online", alive) == other()
    # Another host's pid cannot be checked from here: online is all there is to go by.
    assert live_holder(ME, other(), b"online", dead) == other()


def test_a_stale_owner_is_taken_over() -> None:
    assert live_holder(ME, other(), b"offline", alive) is None  # its last will, or a clean stop
    assert live_holder(ME, other(), None, alive) is None
    assert live_holder(ME, None, b"online", alive) is None  # a daemon-less run-job said online


def test_on_this_host_a_dead_process_or_our_own_pid_is_a_previous_run_of_ours() -> None:
    assert live_holder(ME, other(host="nas"), b"online", dead) is None
    assert live_holder(ME, other(host="nas", pid=ME.pid), b"online", alive) is None
    assert live_holder(ME, other(host="nas"), b"online", alive) == other(host="nas")


def test_of_two_claims_the_later_start_yields_and_both_sides_agree() -> None:
    early, late = other(at=T0), other(at=T0 + timedelta(seconds=1), tag="cccc")
    assert yields_to(late, early) and not yields_to(early, late)
    tie_a, tie_b = other(tag="a"), other(tag="b")
    assert yields_to(tie_b, tie_a) != yields_to(tie_a, tie_b)


def test_the_refusal_names_the_other_serve() -> None:
    assert refusal("homelab", other()) == (
        "instance 'homelab' is already served by mqtt-backup on host 'pi', pid 100, "
        "since 2026-11-29T03:00:00Z; not serving it twice (give this host its own "
        "instance: in the config, or stop the other serve)"
    )
