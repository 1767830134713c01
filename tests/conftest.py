"""Shared test set-up: no test writes to the user's real run history."""

import pytest


@pytest.fixture(autouse=True)
def private_history(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
