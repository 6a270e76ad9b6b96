"""Crash-safe file writes: a JSON file replaced atomically, and the fsyncs that make a finished folder durable.

A file or folder that a later run trusts (a checkpoint's completion marker, a run record, a converted model
folder) must never be seen half written after a crash or power loss: its bytes are flushed to disk before the
name that vouches for it appears.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["fsync_dir", "fsync_tree", "write_json_atomic"]


def write_json_atomic(path: str | os.PathLike, value: Any) -> None:
    """Writes ``value`` as JSON to ``path`` so that readers see the old file or the whole new one, never a part.

    The JSON goes to ``<path>.tmp``, is fsynced, and is renamed over ``path``; the folder is then fsynced so the
    rename itself survives a power loss.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(value, handle, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_tree(folder: str | os.PathLike) -> None:
    """Flushes every file under ``folder`` to disk (before a marker or a rename declares the folder complete)."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flushes ``folder``'s entries (new, renamed or removed names); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
