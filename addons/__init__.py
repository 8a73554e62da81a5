"""wsreplay's mitmproxy addons, each loadable on its own with ``mitmdump -s PATH``."""

from pathlib import Path
from typing import Final

ADDON_FILES: Final = tuple(
    Path(__file__).with_name(f"{name}.py") for name in ("lost_connections", "recorder", "replayer", "resolver")
)
"""The addon scripts, `lost_connections` first (load it with the recorder or the replayer)."""
