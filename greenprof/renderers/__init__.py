"""Turn a Session into something to read; each module does one output.

- :mod:`~greenprof.renderers.console`: terminal tables (summary, ``top``, ``compare``).
- :mod:`~greenprof.renderers.html`: the self-contained HTML report.
- :mod:`~greenprof.renderers.figures`: the report's matplotlib figures.
- :mod:`~greenprof.renderers.chrome`: Chrome/Perfetto trace export.
- :mod:`~greenprof.renderers.tables`, :mod:`~greenprof.renderers.power`,
  :mod:`~greenprof.renderers.units`: the shared shaping of data and numbers.
- :mod:`~greenprof.renderers.synthetic`: a made-up session for demos, benchmarks and tests.

Renderers are pure functions of a Session; none of them needs torch or hardware.
"""
