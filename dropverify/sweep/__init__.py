"""Property-based configuration sweeps: find the p, dtype, layout, shape or parameter where a
layer breaks, shrink it to the smallest case, under one family-wise false-alarm rate.

``run_sweep(target, variant, settings, workers=..., scheduler=...)`` -> :class:`SweepResult`
(see :mod:`.driver` for the error control, :mod:`.space` for the axes and the covering design,
:mod:`.execute` for worker processes and Dask, :mod:`.report` for the outputs).
"""
from .driver import SweepResult, build_space, run_sweep
from .report import reproduce_command, sweep_dict, sweep_markdown, write_sweep
from .space import Config, covering

__all__ = ["Config", "SweepResult", "build_space", "covering", "reproduce_command", "run_sweep", "sweep_dict",
           "sweep_markdown", "write_sweep"]
