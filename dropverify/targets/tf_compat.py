"""Load order for TensorFlow next to torch: import triton before tensorflow.

TensorFlow 2.21 and triton 3.8 (torch's kernel compiler, imported by ``torch._dynamo``, so by
Keras on the torch backend) each carry their own LLVM; loading triton's extension after
TensorFlow's segfaults the process (``import tensorflow; import triton``; and with
``KERAS_BACKEND=torch`` a plain ``import tensorflow`` does it, since TF imports keras, keras
torch, torch triton). The other order works. The TF and Keras adapters call
:func:`load_triton_first` before tensorflow can be imported, and so does loading a user's
factory module (which may import tensorflow itself); it costs ~0.2 s where both are installed
and nothing otherwise.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys


def load_triton_first() -> None:
    """Import triton if both it and tensorflow are installed and neither is loaded yet."""
    if "triton" in sys.modules or "tensorflow" in sys.modules:
        return
    try:
        if importlib.util.find_spec("triton") is None or importlib.util.find_spec("tensorflow") is None:
            return
        importlib.import_module("triton")
    except Exception:  # noqa: BLE001 - a broken triton only matters to torch.compile, not here
        return


__all__ = ["load_triton_first"]
