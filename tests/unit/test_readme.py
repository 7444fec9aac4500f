"""The README is what operators read: every setting must be in its table, and nothing stale."""

from __future__ import annotations

import re
from pathlib import Path

from oms.settings import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme_table_and_no_documented_one_is_gone() -> None:
    documented = set(re.findall(r"^\| `(OMS_[A-Z0-9_]+)` \|", README.read_text(), flags=re.M))
    actual = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert actual - documented == set(), "settings missing from the README table"
    assert documented - actual == set(), "README documents settings that do not exist"


def test_the_readme_test_command_is_the_one_ci_runs() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    assert "pip install -e '.[dev]' && pytest" in README.read_text()
    assert re.search(r"^pytest$", ci, flags=re.M), ".ci/run must run the README's test command"
