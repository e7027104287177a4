"""Atomic file writes: a killed run never leaves half a file behind."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union


def current_umask() -> int:
    """The process umask (read without changing it where /proc tells it; else set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The permissions ``open()`` gives a new file: 0o666 less the umask (0644 under umask 022)."""
    return 0o666 & ~current_umask()


def write_atomic(path: Union[str, Path], data: Union[str, bytes]) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over ``path``
    (with the permissions of :func:`file_mode`, not mkstemp's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def slug(name: str) -> str:
    """A file-name-safe form of a target name: ``torch:Dropout2d[unbatched]`` -> ``torch_Dropout2d_unbatched``."""
    out = "".join(c if c.isalnum() or c in "-." else "_" for c in name)
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_")
