"""Measure stage: the sampler thread that reads every sensor into (t_ns, joules) series.

The sensors themselves live in :mod:`greenprof.sensors` (the public sensor API).
"""
