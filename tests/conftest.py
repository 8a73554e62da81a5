"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mitm_confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mitmproxy configuration directory (and CA) for the whole test session."""
    return tmp_path_factory.mktemp("mitmproxy-confdir")
