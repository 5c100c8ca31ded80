"""Attribute stage: joules per row from a time table and sensor samples.

Pure numpy/scipy; imports neither torch nor the tracking stage.
"""
