"""Track stage: who runs when.

Module, optimizer and autograd hooks, the CUDA clock, event codes and the timeline that turns events
into self time per (module, phase). Knows nothing of joules.
"""
