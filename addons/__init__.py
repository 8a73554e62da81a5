"""wsreplay's mitmproxy addons, each loadable on its own with ``mitmdump -s PATH``."""

from pathlib import Path
from typing import Final

ADDON_FILES: Final = tuple(
    Path(__file__).with_name(f"{name}.py")
    for name in ("lost_connections", "closing_handshake", "recorder", "replayer", "resolver")
)
"""The addon scripts, `lost_connections` and `closing_handshake` first (load them with the recorder or the replayer)."""
