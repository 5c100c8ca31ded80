"""``greenprof.profile()``: the stages composed into a Session.

Sensors, sampler, hooks, timeline and attribution together give a
:class:`~greenprof.session.Session`.
"""

from greenprof.profiler.core import profile

__all__ = ["profile"]
