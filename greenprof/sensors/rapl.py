"""CPU package and DRAM energy from the kernel's RAPL counters (Linux powercap).

The kernel's ``intel_rapl`` drivers publish one zone per CPU package under
``/sys/class/powercap/intel-rapl:N`` (also on AMD Zen CPUs, whose RAPL the same driver reads
since Linux 5.8), with sub-zones ``intel-rapl:N:M`` named ``core``, ``uncore`` or ``dram``; they
are links into ``/sys/devices/virtual/powercap/intel-rapl``, where each sub-zone sits inside its
package. Either directory works as the root. Only
two kinds of zone are read, so that no joule is counted twice:

* ``package-N``: the whole package; ``core`` and ``uncore`` are parts of it and are never added.
* ``dram`` sub-zones: memory, which is *not* part of the package.

``psys`` (the whole platform, package included) and the ``intel-rapl-mmio`` control type (a second
view of the same package counter) are skipped for the same reason.

Since Linux 5.10 ``energy_uj`` is readable only by root; the error raised then says how to open it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

from greenprof.clock import now_ns
from greenprof.errors import SensorError, SensorUnavailable
from greenprof.sensors.base import Sensor

logger = logging.getLogger(__name__)

DEFAULT_ROOT = "/sys/class/powercap"

_PACKAGE_ZONE = re.compile(r"^intel-rapl:(\d+)$")
_SUB_ZONE = re.compile(r"^intel-rapl:(\d+):(\d+)$")
_ZONE = re.compile(r"^intel-rapl(:\d+)+$")
#: The control type's own directory (not a zone); ``intel-rapl-mmio`` is deliberately not it.
_CONTROL_TYPE = "intel-rapl"
_CONSTRAINT_POWER = re.compile(r"^constraint_\d+_(max_power|power_limit)_uw$")

#: Used when a zone states no power limit: above any single CPU package or memory system sold.
_DEFAULT_MAX_POWER_W = 1000.0
#: Power limits are long- or short-term averages; bursts above them are brief and bounded.
_POWER_LIMIT_HEADROOM = 2.0
#: The counter advances in steps of about 1 ms; reads a few ms apart may straddle extra steps.
_UPDATE_SLACK_S = 0.01


def discover(root: str | Path = DEFAULT_ROOT, *, clock: Callable[[], int] = now_ns) -> list[Sensor]:
    """Return one sensor per CPU package and per DRAM sub-zone found under ``root``.

    Args:
        root: the powercap directory; tests point it at a fake tree.
        clock: monotonic nanoseconds, used to judge counter wraparound.

    Raises:
        SensorUnavailable: when there is no RAPL zone, or a counter cannot be read (with the
            reason and how to fix it, e.g. the permission change Linux 5.10+ needs).
    """
    root = Path(root)
    zones = _find_zones(root)
    sensors: list[Sensor] = []
    for path, label, device in zones:
        sensors.append(RaplSensor(path, name=f"rapl:{label}", device=device, clock=clock))
    return sensors


def _find_zones(root: Path) -> list[tuple[Path, str, str]]:
    """Return ``(zone path, label, device)`` for each package and DRAM zone, in index order."""
    no_rapl_fix = (
        "on Intel CPUs, and AMD Zen CPUs with Linux 5.8 or later, load the driver with "
        "`sudo modprobe intel_rapl_msr`; virtual machines and most containers do not expose RAPL"
    )
    if not root.is_dir():
        raise SensorUnavailable(
            "rapl", f"{root} does not exist (no powercap support).", no_rapl_fix
        )
    packages: dict[int, tuple[Path, str]] = {}
    subzones: list[tuple[int, int, Path]] = []
    for entry in _zone_dirs(root):
        if match := _PACKAGE_ZONE.match(entry.name):
            name = _read_zone_name(entry)
            if name.startswith("package"):
                packages[int(match.group(1))] = (entry, name)
            else:
                logger.debug("skipping RAPL zone %s (%s): it overlaps the packages", entry, name)
        elif match := _SUB_ZONE.match(entry.name):
            subzones.append((int(match.group(1)), int(match.group(2)), entry))
    if not packages:
        raise SensorUnavailable("rapl", f"no RAPL package zone under {root}.", no_rapl_fix)
    zones = [(path, name, "cpu") for _, (path, name) in sorted(packages.items())]
    for package, _, path in sorted(subzones):
        if package in packages and _read_zone_name(path) == "dram":
            zones.append((path, f"{packages[package][1]}:dram", "cpu:dram"))
    return zones


def _zone_dirs(root: Path) -> list[Path]:
    """Return every ``intel-rapl`` zone directory under ``root``, each zone once.

    ``/sys/class/powercap`` lists packages and sub-zones side by side (symlinks into
    ``/sys/devices/virtual/powercap/intel-rapl``), next to a link to the control type itself;
    under the control type, sub-zones sit only inside their package. Walking into the control
    type and into packages finds both layouts; the kernel names zones uniquely
    (``intel-rapl:N:M``), so a zone reached twice (as a sibling link and inside its package) is
    kept once. Only ``intel-rapl``-named entries are entered, which keeps the walk off the
    ``device`` and ``subsystem`` links that loop back into sysfs.
    """
    seen: dict[str, Path] = {}
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = sorted(directory.iterdir())
        except OSError as exc:
            logger.debug("cannot list %s: %s", directory, exc)
            continue
        for entry in entries:
            if entry.name == _CONTROL_TYPE and entry.is_dir():
                pending.append(entry)
            elif _ZONE.match(entry.name) and entry.is_dir() and entry.name not in seen:
                seen[entry.name] = entry
                pending.append(entry)
    return list(seen.values())


def _read_zone_name(zone: Path) -> str:
    try:
        return (zone / "name").read_text().strip()
    except OSError as exc:
        raise _unreadable(zone / "name", exc) from exc


def _read_int(path: Path) -> int:
    # A fresh read each time: sysfs regenerates the value on every read from offset 0.
    return int(path.read_text().strip())


def _unreadable(path: Path, exc: OSError) -> SensorUnavailable:
    """Convert an OS error on a powercap file into greenprof's error, with the fix."""
    if isinstance(exc, PermissionError):
        # The parent of the outermost zone is the powercap root (flat) or the control type
        # (nested); the two globs cover packages and the sub-zones nested inside them.
        top = path.parent
        while _ZONE.match(top.parent.name):
            top = top.parent
        counters = (
            f"{top.parent}/intel-rapl:*/energy_uj {top.parent}/intel-rapl:*/intel-rapl:*/energy_uj"
        )
        return SensorUnavailable(
            "rapl",
            f"{path} is readable only by root (Linux 5.10 and later restrict RAPL counters).",
            "run as root, or let other users read the counters (this reopens a power side "
            "channel; do it only on machines you trust): until reboot with "
            f"`sudo chmod a+r {counters}`, or permanently with a udev rule in "
            "/etc/udev/rules.d/99-greenprof-rapl.rules: "
            '`ACTION=="add", SUBSYSTEM=="powercap", KERNEL=="intel-rapl:*", '
            'RUN+="/bin/chmod a+r /sys%p/energy_uj"`',
        )
    return SensorUnavailable("rapl", f"cannot read {path}: {exc.strerror or exc}.")


def _plausible_max_power_w(zone: Path) -> float:
    """Return a power the zone will not exceed, from its power limits when it states any."""
    limits_w = []
    for entry in zone.glob("constraint_*_uw"):
        if _CONSTRAINT_POWER.match(entry.name):
            try:
                limits_w.append(_read_int(entry) / 1e6)
            except (OSError, ValueError):
                continue  # limits only sharpen the plausibility check; the default is safe
    limit_w = max((w for w in limits_w if w > 0), default=0.0)
    return limit_w * _POWER_LIMIT_HEADROOM if limit_w else _DEFAULT_MAX_POWER_W


class RaplSensor(Sensor):
    """One RAPL zone's cumulative energy, wraparound corrected.

    The hardware counter is 32 bits wide in energy units and wraps at ``max_energy_range_uj``
    (about 262 kJ on most Intel CPUs: every ~20 minutes at 200 W). A read lower than the one
    before is a wrap when the energy it implies fits in the time between the reads at the zone's
    plausible maximum power; otherwise the counter went backwards and :meth:`energy_j` raises.

    Reads further apart than one wrap period can hide several wraps, which the counter alone
    cannot count. The sensor then assumes that the average power over the gap equals the last
    average power it measured, takes the number of wraps that best matches it, and never more than
    the plausible maximum power allows (none when no power has been measured yet). This only
    matters for a sensor read rarely; the sampler reads it every few milliseconds.

    Args:
        zone: the zone directory, e.g. ``/sys/class/powercap/intel-rapl:0``.
        name: sensor name, e.g. ``"rapl:package-0"``.
        device: ``"cpu"`` for a package, ``"cpu:dram"`` for memory.
        clock: monotonic nanoseconds.

    Raises:
        SensorUnavailable: when the zone's files cannot be read.

    Example:
        >>> zone = "/sys/class/powercap/intel-rapl:0"
        >>> sensor = RaplSensor(zone, name="rapl:package-0")  # doctest: +SKIP
        >>> sensor.energy_j()  # doctest: +SKIP
        0.0
    """

    measured = True

    def __init__(
        self,
        zone: str | Path,
        *,
        name: str,
        device: str = "cpu",
        clock: Callable[[], int] = now_ns,
    ) -> None:
        self.zone = Path(zone)
        self.name = name
        self.device = device
        self._clock = clock
        self._counter_path = self.zone / "energy_uj"
        range_path = self.zone / "max_energy_range_uj"
        try:
            self.range_uj = _read_int(range_path)
            first_uj = _read_int(self._counter_path)
        except OSError as exc:
            raise _unreadable(Path(exc.filename or self._counter_path), exc) from exc
        except ValueError as exc:
            raise SensorUnavailable(
                "rapl", f"{self.zone}: counter files hold no number ({exc})."
            ) from exc
        if self.range_uj <= 0:
            raise SensorUnavailable("rapl", f"{range_path} is {self.range_uj}; cannot undo wraps.")
        self.max_power_w = _plausible_max_power_w(self.zone)
        self._lock = threading.Lock()
        self._last_uj = first_uj
        self._last_ns = clock()
        self._total_uj = 0
        self._last_power_w: float | None = None

    def energy_j(self) -> float:
        """Return joules since the sensor was created.

        Raises:
            SensorError: when the counter cannot be read or goes backwards without a wrap.
        """
        with self._lock:
            try:
                raw_uj = _read_int(self._counter_path)
            except (OSError, ValueError) as exc:
                raise SensorError(f"{self.name}: cannot read {self._counter_path}: {exc}") from exc
            t_ns = self._clock()
            elapsed_s = max(t_ns - self._last_ns, 0) / 1e9
            delta_uj = self._advance_uj(raw_uj, elapsed_s)
            self._total_uj += delta_uj
            if elapsed_s > 0:
                self._last_power_w = delta_uj / 1e6 / elapsed_s
            self._last_uj, self._last_ns = raw_uj, t_ns
            return self._total_uj / 1e6

    def _advance_uj(self, raw_uj: int, elapsed_s: float) -> int:
        """Return the microjoules between the last read and ``raw_uj``, wraps included."""
        delta_uj = raw_uj - self._last_uj
        wrapped = delta_uj < 0
        if wrapped:
            delta_uj += self.range_uj
        budget_uj = self.max_power_w * (elapsed_s + _UPDATE_SLACK_S) * 1e6
        if wrapped and delta_uj > budget_uj:
            raise SensorError(
                f"{self.name}: energy counter went backwards ({self._last_uj} -> {raw_uj} uJ in "
                f"{elapsed_s:.3f} s) and a wrap would mean more than {self.max_power_w:g} W; "
                "the counter was reset or is faulty"
            )
        max_extra_wraps = int((budget_uj - delta_uj) // self.range_uj)
        if max_extra_wraps >= 1 and self._last_power_w is not None:
            expected_uj = self._last_power_w * elapsed_s * 1e6
            extra = round((expected_uj - delta_uj) / self.range_uj)
            extra = min(max(extra, 0), max_extra_wraps)
            if extra:
                logger.warning(
                    "%s: %.0f s between reads; assuming %d extra counter wrap(s) from the last "
                    "measured power of %.1f W",
                    self.name,
                    elapsed_s,
                    extra,
                    self._last_power_w,
                )
            delta_uj += extra * self.range_uj
        return delta_uj

    def describe(self) -> dict[str, object]:
        """Return the facts a report shows, including the zone read."""
        return {**super().describe(), "zone": str(self.zone)}
