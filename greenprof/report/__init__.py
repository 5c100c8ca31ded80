"""Report stage: everything that shows a session or an optimize result.

Terminal, HTML, figures, traces, data files), behind a registry of renderers
(:mod:`greenprof.report.registry`).
"""
