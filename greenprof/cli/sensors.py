"""``greenprof sensors``: what can be measured here, and why not the rest."""

from __future__ import annotations

import click

from greenprof.cli.group import cli
from greenprof.cli.options import cpu_power_option


@cli.command("sensors")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="How long to measure each sensor's power.",
)
@cpu_power_option
@click.option("--powercap-root", default="/sys/class/powercap", hidden=True)
def sensors_command(seconds: float, cpu_power_w: float | None, powercap_root: str) -> None:
    """Show what can be measured here, with a live reading, and why the rest cannot."""
    from greenprof.errors import ConfigError
    from greenprof.measure.sampler import mean_power_w
    from greenprof.sensors import (
        CpuEstimateSensor,
        availability,
        available_sensors,
        default_selection,
    )

    try:
        results = availability(rated_cpu_power_w=cpu_power_w, powercap_root=powercap_root)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    found = available_sensors(results)
    try:
        readings = mean_power_w(found, seconds)
        click.echo(f"Sensors found (power over {seconds:g} s):")
        for sensor in found:
            kind = "MEASURED" if sensor.measured else "ESTIMATED"
            reading = readings[sensor.name]
            shown = f"{reading:9.2f} W" if isinstance(reading, float) else f"failed: {reading}"
            if isinstance(sensor, CpuEstimateSensor):
                shown += f"  ({sensor.watts_per_cpu_w:g} W per busy logical CPU; this process)"
            click.echo(f"  {sensor.name:<22} {sensor.device:<10} {kind:<10} {shown}")
        missing = [exc for _, exc in results if not isinstance(exc, list)]
        if missing:
            click.echo("Not available:")
        for exc in missing:
            click.echo(f"  {exc.kind:<8} {exc.reason}")
            if exc.fix:
                click.echo(f"  {'':<8} fix: {exc.fix}")
        chosen = ", ".join(s.name for s in default_selection(results))
        click.echo(f"Profiling uses by default: {chosen}")
    finally:
        for sensor in found:
            sensor.close()
