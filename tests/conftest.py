"""Shared test set-up: no test writes to the user's real run history; the tiny model's fixtures."""

import pytest


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
