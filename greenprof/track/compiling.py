"""Whether torch.compile is tracing the code that calls a hook: then the hook must do nothing.

Use both, in this order: ``dynamo_compiling() or COMPILER._is_compiling_flag``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

# Dynamo folds this call to True while it traces, so the branch it guards leaves no trace in the
# graph; the flag (what torch.compiler.is_compiling() reads, at a tenth of the cost) is true for
# the rest of a compile or export session (AOT tracing, make_fx).
dynamo_compiling = torch.compiler.is_dynamo_compiling
COMPILER: Any = torch.compiler
if not hasattr(COMPILER, "_is_compiling_flag"):
    COMPILER = SimpleNamespace(_is_compiling_flag=False)
