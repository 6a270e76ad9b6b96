"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import os

import pytest

from frozen_hf.bundled import frozen_hf_cache_dir

# Pin the bundled-LM cache before any fixture moves HF_HOME, so the suite converts SmolLM2 once, not per test.
os.environ.setdefault("FROZEN_HF_CACHE", str(frozen_hf_cache_dir()))

from tests.helpers.hub_server import HubFixture, HubServer, client_env, patch_client_constants


@pytest.fixture
def hub_server(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubFixture]:
    """A loopback Hugging Face Hub on 127.0.0.1, with this process's Hub client pointed at it.

    Sets HF_ENDPOINT, HF_HUB_DISABLE_XET=1, HF_HUB_OFFLINE=0, HF_HUB_DISABLE_TELEMETRY=1, a fresh
    HF_HOME / HF_HUB_CACHE and HF_TOKEN (the server's token) in the environment, and patches the
    values `huggingface_hub` froze at import. Yields a `HubFixture`: `.url`, `.token`, `.user`,
    `.require_token`, `.fail_next_commit`, `.server`, `.env()`, `.run_python(code, ...)`.
    """
    home = str(tmp_path_factory.mktemp("hf_home"))
    server = HubServer().start()
    try:
        for name, value in client_env(server, home).items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
        patch_client_constants(monkeypatch, server, home)
        yield HubFixture(server, home)
    finally:
        server.stop()
