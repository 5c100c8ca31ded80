"""The one clock hooks and sampler share (design rule 1)."""

import time

#: Monotonic nanoseconds; every timestamp in greenprof comes from this function.
now_ns = time.perf_counter_ns
