"""``python -m greenprof`` is the same as the ``greenprof`` command."""

from greenprof.cli import main

if __name__ == "__main__":
    main()
