import errno
import os
from pathlib import Path

import pytest

from greenprof.errors import SensorError, SensorUnavailable
from greenprof.sensors import rapl

#: A 1 J counter range and a 100 W power limit (so at most 200 W is plausible): wraps come fast.
SMALL_RANGE = {"range_uj": 1_000_000, "limits_uw": {"constraint_0_max_power_uw": 100_000_000}}


def one_package(powercap, clock, energy_uj=0, **zone_options):
    zone = powercap.zone("intel-rapl:0", "package-0", energy_uj, **zone_options)
    (sensor,) = rapl.discover(powercap.root, clock=clock)
    return zone, sensor


def test_discovers_packages_and_dram_but_not_their_overlaps(powercap, clock):
    powercap.zone("intel-rapl:0", "package-0")
    powercap.zone("intel-rapl:0:0", "core")
    powercap.zone("intel-rapl:0:1", "uncore")
    powercap.zone("intel-rapl:0:2", "dram")
    powercap.zone("intel-rapl:1", "package-1")
    powercap.zone("intel-rapl:1:0", "core")
    powercap.zone("intel-rapl:2", "psys")  # the whole platform: would count the packages twice
    powercap.zone("intel-rapl-mmio:0", "package-0")  # a second view of package 0
    (powercap.root / "intel-rapl").mkdir()  # the control type itself

    sensors = rapl.discover(powercap.root, clock=clock)

    assert [(s.name, s.device, s.measured) for s in sensors] == [
        ("rapl:package-0", "cpu", True),
        ("rapl:package-1", "cpu", True),
        ("rapl:package-0:dram", "cpu:dram", True),
    ]


def nested_tree(powercap):
    """The control type's own layout: sub-zones only inside their package."""
    powercap.zone("intel-rapl", "unused")  # the control type directory (its name file is unread)
    powercap.zone("intel-rapl/intel-rapl:0", "package-0")
    powercap.zone("intel-rapl/intel-rapl:0/intel-rapl:0:0", "core")
    powercap.zone("intel-rapl/intel-rapl:0/intel-rapl:0:1", "dram")
    powercap.zone("intel-rapl/intel-rapl:1", "package-1")
    powercap.zone("intel-rapl/intel-rapl:1/intel-rapl:1:0", "dram")
    return powercap.root / "intel-rapl"


NESTED_SENSORS = [
    ("rapl:package-0", "cpu"),
    ("rapl:package-1", "cpu"),
    ("rapl:package-0:dram", "cpu:dram"),
    ("rapl:package-1:dram", "cpu:dram"),
]


def test_nested_layout_keeps_the_dram_zones(powercap, clock):
    control_type = nested_tree(powercap)

    sensors = rapl.discover(control_type, clock=clock)

    assert [(s.name, s.device) for s in sensors] == NESTED_SENSORS
    assert sensors[2].zone == control_type / "intel-rapl:0" / "intel-rapl:0:1"


def test_nested_layout_found_from_the_powercap_directory_above_it(powercap, clock):
    nested_tree(powercap)

    assert [(s.name, s.device) for s in rapl.discover(powercap.root, clock=clock)] == (
        NESTED_SENSORS
    )


def test_class_layout_of_links_counts_each_zone_once(powercap, clock, tmp_path):
    """/sys/class/powercap: links to the control type, the packages and the sub-zones."""
    control_type = nested_tree(powercap)
    class_root = tmp_path / "class"
    class_root.mkdir()
    (class_root / "intel-rapl").symlink_to(control_type)
    for zone in ("intel-rapl:0", "intel-rapl:1"):
        (class_root / zone).symlink_to(control_type / zone)
    for package, zone in (
        ("0", "intel-rapl:0:0"),
        ("0", "intel-rapl:0:1"),
        ("1", "intel-rapl:1:0"),
    ):
        (class_root / zone).symlink_to(control_type / f"intel-rapl:{package}" / zone)

    sensors = rapl.discover(class_root, clock=clock)

    assert [(s.name, s.device) for s in sensors] == NESTED_SENSORS
    powercap.set(control_type / "intel-rapl:1" / "intel-rapl:1:0", 2_000_000)
    assert sensors[3].energy_j() == pytest.approx(2.0)


def test_permission_fix_in_the_nested_layout_covers_the_sub_zones(powercap):
    control_type = nested_tree(powercap)
    dram = control_type / "intel-rapl:0" / "intel-rapl:0:1" / "energy_uj"

    error = rapl._unreadable(dram, PermissionError(errno.EACCES, "denied", str(dram)))

    assert f"{control_type}/intel-rapl:*/intel-rapl:*/energy_uj" in error.fix
    assert f"{control_type}/intel-rapl:*/energy_uj" in error.fix


def test_package_without_dram_gives_one_sensor(powercap, clock):
    powercap.zone("intel-rapl:0", "package-0")
    powercap.zone("intel-rapl:0:0", "core")

    assert [s.name for s in rapl.discover(powercap.root, clock=clock)] == ["rapl:package-0"]


def test_reads_joules_since_creation(powercap, clock):
    zone, sensor = one_package(powercap, clock, 7_000_000)

    clock.advance(0.1)
    powercap.set(zone, 9_500_000)
    assert sensor.energy_j() == pytest.approx(2.5)
    clock.advance(0.1)
    powercap.set(zone, 10_000_000)
    assert sensor.energy_j() == pytest.approx(3.0)


def test_single_wrap_is_undone(powercap, clock):
    zone, sensor = one_package(powercap, clock, 900_000, **SMALL_RANGE)

    clock.advance(0.01)
    powercap.set(zone, 100_000)

    assert sensor.energy_j() == pytest.approx(0.2)


def test_double_wrap_between_reads_uses_last_measured_power(powercap, clock):
    zone, sensor = one_package(powercap, clock, **SMALL_RANGE)
    clock.advance(0.01)
    powercap.set(zone, 500_000)
    assert sensor.energy_j() == pytest.approx(0.5)  # 50 W measured

    # 40 ms at 50 W is 2 J: the counter wrapped twice and stands where it stood.
    clock.advance(0.04)
    assert sensor.energy_j() == pytest.approx(2.5)


def test_extra_wraps_never_exceed_the_plausible_power(powercap, clock):
    zone, sensor = one_package(powercap, clock, **SMALL_RANGE)
    clock.advance(0.001)
    powercap.set(zone, 900_000)  # 900 W over 1 ms: a burst, accepted
    sensor.energy_j()

    clock.advance(1.0)  # at 900 W that would be 900 wraps; 200 W allows about 200
    total_j = sensor.energy_j()

    assert 0.9 + 150 < total_j <= 0.9 + 200 * (1.0 + 0.01) + 1e-9


def test_no_extra_wraps_assumed_before_any_power_is_known(powercap, clock):
    zone, sensor = one_package(powercap, clock, range_uj=1_000_000)

    clock.advance(60.0)
    powercap.set(zone, 300_000)

    assert sensor.energy_j() == pytest.approx(0.3)


def test_counter_going_backwards_is_a_sensor_error(powercap, clock):
    zone, sensor = one_package(powercap, clock, 5_000_000)

    clock.advance(0.01)
    powercap.set(zone, 4_000_000)

    with pytest.raises(SensorError, match="backwards"):
        sensor.energy_j()


def test_plausible_power_comes_from_the_zone_limits(powercap, clock):
    limits = {"constraint_0_max_power_uw": 100_000_000, "constraint_1_power_limit_uw": 150_000_000}
    powercap.zone("intel-rapl:0", "package-0", limits_uw=limits)
    powercap.zone("intel-rapl:0:0", "dram")

    package, dram = rapl.discover(powercap.root, clock=clock)

    assert package.max_power_w == pytest.approx(300.0)
    assert dram.max_power_w == pytest.approx(1000.0)  # no limits stated: the safe default


@pytest.mark.parametrize("root_exists", [True, False])
def test_no_zones_says_how_to_load_the_driver(tmp_path, root_exists):
    root = tmp_path / "powercap"
    if root_exists:
        root.mkdir()

    with pytest.raises(SensorUnavailable) as info:
        rapl.discover(root)

    assert info.value.kind == "rapl"
    assert "modprobe intel_rapl_msr" in info.value.fix


def test_real_permission_error_gives_the_exact_fix(powercap, monkeypatch):
    powercap.zone("intel-rapl:0", "package-0")
    read_int = rapl._read_int

    def root_only(path: Path) -> int:
        if path.name == "energy_uj":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return read_int(path)

    monkeypatch.setattr(rapl, "_read_int", root_only)

    with pytest.raises(SensorUnavailable) as info:
        rapl.discover(powercap.root)

    error = info.value
    assert "root" in error.reason and "energy_uj" in error.reason
    assert f"sudo chmod a+r {powercap.root}/intel-rapl:*/energy_uj" in error.fix
    assert 'RUN+="/bin/chmod a+r /sys%p/energy_uj"' in error.fix
    assert "run as root" in error.fix


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file anyway")
def test_unreadable_counter_file_as_non_root(powercap):
    zone = powercap.zone("intel-rapl:0", "package-0")
    (zone / "energy_uj").chmod(0)

    with pytest.raises(SensorUnavailable, match="readable only by root"):
        rapl.discover(powercap.root)


@pytest.mark.parametrize("breakage", ["directory", "dangling symlink"])
def test_counter_that_cannot_be_read_even_as_root(powercap, breakage):
    zone = powercap.zone("intel-rapl:0", "package-0")
    (zone / "energy_uj").unlink()
    if breakage == "directory":
        (zone / "energy_uj").mkdir()
    else:
        (zone / "energy_uj").symlink_to(zone / "gone")

    with pytest.raises(SensorUnavailable, match="cannot read .*energy_uj"):
        rapl.discover(powercap.root)


def test_counter_vanishing_after_discovery_is_a_sensor_error(powercap, clock):
    zone, sensor = one_package(powercap, clock)

    (zone / "energy_uj").unlink()

    with pytest.raises(SensorError, match="rapl:package-0"):
        sensor.energy_j()


def test_garbage_in_counter_file(powercap):
    zone = powercap.zone("intel-rapl:0", "package-0")
    (zone / "energy_uj").write_text("not a number\n")

    with pytest.raises(SensorUnavailable, match="no number"):
        rapl.discover(powercap.root)
