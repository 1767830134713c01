"""Shared test set-up: no test reads or writes the user's home (run history, caches); the tiny model's fixtures."""

import os
import tempfile
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Before any fixture or test module runs (module-scoped fixtures included), and inherited by
    # every subprocess a test starts: a home of the session's own, with its data, cache and
    # config folders, so the history store, Hugging Face and matplotlib caches never touch ~.
    home = Path(tempfile.mkdtemp(prefix="perfbench-tests-home-"))
    os.environ["HOME"] = str(home)
    for variable, folder in (("XDG_DATA_HOME", ".local/share"), ("XDG_CACHE_HOME", ".cache"), ("XDG_CONFIG_HOME", ".config")):
        os.environ[variable] = str(home / folder)


@pytest.fixture(autouse=True)
def private_history(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))


@pytest.fixture(scope="module")
def loaded():
    """The tiny test Llama, loaded on the CPU (torch is imported only by tests that ask for it)."""
    from perfbench.servers.transformers_server import load_model
    from tests.tiny_llama import shared_tiny_llama

    return load_model(str(shared_tiny_llama()), device="cpu")


@pytest.fixture
def generator(loaded):
    """A running batched generator over the tiny model."""
    from perfbench.servers.generation import BatchGenerator

    gen = BatchGenerator(loaded.model, loaded.tokenizer, max_batch_size=16)
    gen.start()
    yield gen
    gen.stop()
