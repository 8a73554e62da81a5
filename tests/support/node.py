"""Node.js, for the clients that use its WebSocket API (undici, as in browsers)."""

from __future__ import annotations

import shutil
import subprocess

NODE = shutil.which("node")


def node_version() -> tuple[int, ...]:
    """The installed Node's version (Node must be installed)."""
    assert NODE is not None
    out = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(part) for part in out.strip().lstrip("v").split("."))
