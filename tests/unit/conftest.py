"""Helpers shared by unit tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Default settings whatever the environment, and faust's data directory kept out of the repo."""
    for name in [n for n in os.environ if n.startswith("OMS_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
