"""greenprof's version, in one place (the package, the CLI and saved runs read it)."""

__version__ = "0.1.0"
