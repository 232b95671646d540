"""Output files: written whole or not at all, with the permissions any other tool would give."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def _umask() -> int:
    mask = os.umask(0)          # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def write_atomically(path, content: str | bytes) -> Path:
    """Write via a temporary file and rename, so a failure never leaves a half-written file.
    The file gets the mode a plain ``open(path, "w")`` would (0666 minus the umask), not the
    temporary file's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(content, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(content)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
