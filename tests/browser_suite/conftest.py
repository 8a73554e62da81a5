"""The two fixtures a pytest-playwright suite overrides to run its pages through wsreplay."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.chromium import LAUNCH_ARGS, chromium_path


@pytest.fixture(scope="session")
def browser_type_launch_args(
    browser_type_launch_args: dict[str, Any], wsreplay_chromium_args: list[str]
) -> dict[str, Any]:
    """The system's Chromium (browsers cannot be downloaded here), accepting the proxy's certificates."""
    arguments = [*browser_type_launch_args.get("args", []), *LAUNCH_ARGS, *wsreplay_chromium_args]
    return {**browser_type_launch_args, "executable_path": chromium_path(), "args": arguments}


@pytest.fixture
def browser_context_args(
    browser_context_args: dict[str, Any], wsreplay_browser_context_args: dict[str, Any]
) -> dict[str, Any]:
    """Every page of a test goes through wsreplay's proxy (the README's conftest)."""
    return {**browser_context_args, **wsreplay_browser_context_args}
