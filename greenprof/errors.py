"""greenprof's own exception family.

Errors from vendor libraries (NVML, the kernel's powercap files, torchao, ...) are converted into
these at the boundary, with a message that says what to do.
"""


class GreenprofError(Exception):
    """Base class of every error greenprof raises on purpose."""


class ConfigError(GreenprofError, ValueError):
    """An option or argument has a value greenprof cannot use."""


class SensorError(GreenprofError):
    """A sensor could not be read."""


class SensorUnavailable(SensorError):
    """A kind of sensor cannot be used on this machine.

    Attributes:
        kind: the sensor kind (``"nvml"``, ``"rapl"``, ...).
        reason: why it cannot be used, in one sentence.
        fix: what the user can do about it, or ``""`` when nothing can be done.
    """

    def __init__(self, kind: str, reason: str, fix: str = "") -> None:
        self.kind = kind
        self.reason = reason
        self.fix = fix
        message = f"{kind}: {reason}"
        if fix:
            message += f" Fix: {fix}"
        super().__init__(message)


class SessionFormatError(GreenprofError):
    """A saved run directory is missing, truncated, corrupt or written by a newer greenprof."""


class ProfilerError(GreenprofError, RuntimeError):
    """The profiler was used in a way it cannot honour (e.g. nested profiles)."""


class Terminated(SystemExit):
    """The process got a termination signal (SIGTERM: a scheduler's preemption, a launcher).

    Raised in the main thread while a profiled script runs, it stops the script as the signal
    would, with the shell's status (128 + the signal's number), and lets the profile end and save.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"stopped by signal {self.signum}"


def require_module(module: str, feature: str, extra: str) -> None:
    """Fail when an optional package a feature needs is not installed, saying how to install it.

    Args:
        module: the package's import name (``"wandb"``).
        feature: what needs it, as the user asked for it (``"--wandb"``).
        extra: greenprof's extra that installs it (``"wandb"``).

    Raises:
        ConfigError: ``module`` cannot be imported.
    """
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"{feature} needs the {module} package: pip install 'greenprof[{extra}]' "
            f"(or pip install {module})"
        )
