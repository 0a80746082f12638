"""The README documents every setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from pricewatch.settings import Settings

README = (Path(__file__).parents[3] / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_the_readme(name: str) -> None:
    assert f"`PRICEWATCH_{name.upper()}`" in README
