"""--images: synthetic images of the asked sizes and format (decoded from what the mock received),
--image-dir files byte for byte, request_bytes equal to the bodies sent, one-line refusals, the
scenario keys, and the local transformers server refusing images for its text-only model."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from perfbench.commands.main import main
from perfbench.workload.images import IMAGE_BYTES_BUDGET, MAX_DISTINCT_IMAGES, request_images
from perfbench.servers.mock import MockConfig, MockInThread

QUIET = ["--no-plots", "--no-live", "--no-telemetry", "--no-preflight"]


@pytest.fixture(scope="module")
def mock():
    with MockInThread(MockConfig(ttft_ms=1, itl_ms=1)) as server:
        server.server.keep_bodies = True
        yield server


def run(mock, out: Path, *flags: str, path: str = "/v1/chat/completions") -> tuple[list, list[dict]]:
    """Run perfbench one request at a time (so the mock's log is in request order): (log entries, requests.jsonl lines)."""
    mock.server.log.clear()
    assert main(["--url", mock.base_url + path, "-c", "1", "--max-tokens", "2", "--output-dir", str(out), *flags, *QUIET]) == 0
    lines = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    return list(mock.server.log), sorted(lines, key=lambda line: line["index"])


def user_parts(body: bytes) -> list[dict]:
    messages = json.loads(body)["messages"]
    assert messages[-1]["role"] == "user"
    return messages[-1]["content"]


def decoded(part: dict) -> tuple[str, bytes]:
    """(MIME type, bytes) of an image_url part's data URL."""
    assert part["type"] == "image_url"
    url = part["image_url"]["url"]
    head, _, data = url.partition(",")
    assert head.startswith("data:") and head.endswith(";base64")
    return head[len("data:"):-len(";base64")], base64.b64decode(data, validate=True)


def test_synthetic_pngs_of_the_given_size_after_the_text(mock, tmp_path: Path) -> None:
    log, lines = run(mock, tmp_path / "r", "-n", "3", "--images", "2", "--image-size", "64x48", "--input-tokens", "5")
    assert len(log) == 3 and [entry.images for entry in log] == [2, 2, 2]
    seen = set()
    for entry in log:
        text, *images = user_parts(entry.body)
        assert text["type"] == "text" and len(text["text"].split()) == 5
        assert len(images) == 2
        for part in images:
            mime, data = decoded(part)
            image = Image.open(io.BytesIO(data))
            assert (mime, image.format, image.size, image.mode) == ("image/png", "PNG", (64, 48), "RGB")
            seen.add(data)
    assert len(seen) == 6  # every image of the run is its own
    assert [line["input_tokens"] for line in lines] == [5, 5, 5]  # the mock counts words: images add none


def test_jpegs_drawn_from_a_choice_of_sizes_and_the_same_for_the_same_seed(mock, tmp_path: Path) -> None:
    flags = ["-n", "8", "--images", "3", "--image-size", "32x32,80x16", "--image-format", "jpeg"]
    log, _ = run(mock, tmp_path / "a", *flags)
    sizes = []
    for entry in log:
        for part in user_parts(entry.body)[1:]:
            mime, data = decoded(part)
            image = Image.open(io.BytesIO(data))
            assert (mime, image.format) == ("image/jpeg", "JPEG")
            sizes.append(image.size)
    assert len(sizes) == 24 and set(sizes) == {(32, 32), (80, 16)}
    again, _ = run(mock, tmp_path / "b", *flags)
    other, _ = run(mock, tmp_path / "c", *flags, "--seed", "1")
    assert [e.body for e in again] == [e.body for e in log]
    assert [user_parts(e.body)[1:] for e in other] != [user_parts(e.body)[1:] for e in log]


def test_request_bytes_is_the_size_of_the_body_sent(mock, tmp_path: Path) -> None:
    log, lines = run(mock, tmp_path / "r", "-n", "4", "--images", "1", "--image-size", "40x40,200x100")
    assert [line["request_bytes"] for line in lines] == [len(entry.body) for entry in log]
    assert len({line["request_bytes"] for line in lines}) > 1
    _, plain = run(mock, tmp_path / "p", "-n", "2")  # every request has it, images or not
    assert all(line["request_bytes"] > 0 for line in plain)
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "r" / "requests.parquet").column("request_bytes").to_pylist() == [
        line["request_bytes"] for line in sorted(lines, key=lambda line: (line["step"], line["index"]))]


def image_folder(folder: Path) -> list[bytes]:
    """Three images (PNG, JPEG, GIF) in name order, and files that are no image files (ignored)."""
    folder.mkdir()
    files = []
    for name, fmt, size in (("a.png", "PNG", (7, 5)), ("b.JPG", "JPEG", (9, 9)), ("c.gif", "GIF", (3, 4))):
        out = io.BytesIO()
        Image.new("RGB", size, (10, 200, 30)).save(out, format=fmt)
        (folder / name).write_bytes(out.getvalue())
        files.append(out.getvalue())
    (folder / "README.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"not even read")
    return files


def test_image_dir_files_are_sent_byte_for_byte_in_turn(mock, tmp_path: Path) -> None:
    files = image_folder(tmp_path / "images")
    log, lines = run(mock, tmp_path / "r", "-n", "3", "--images", "2", "--image-dir", str(tmp_path / "images"))
    sent = [[decoded(part) for part in user_parts(entry.body)[1:]] for entry in log]
    mimes = ["image/png", "image/jpeg", "image/gif"]
    expected = [[(mimes[k % 3], files[k % 3]) for k in (2 * i, 2 * i + 1)] for i in range(3)]
    assert sent == expected
    assert [line["request_bytes"] for line in lines] == [len(entry.body) for entry in log]


def test_a_scenario_file_sets_the_images(mock, tmp_path: Path) -> None:
    scenario = tmp_path / "images.yaml"
    scenario.write_text("workload:\n  images: {count: 1, size: [24x24, 48x24], format: jpeg}\n  input_tokens: 3\n")
    log, _ = run(mock, tmp_path / "r", "--scenario", str(scenario), "-n", "4")
    sizes = {Image.open(io.BytesIO(decoded(user_parts(e.body)[1])[1])).size for e in log}
    assert [e.images for e in log] == [1, 1, 1, 1] and sizes <= {(24, 24), (48, 24)}
    (tmp_path / "dir-scenario").mkdir()
    files = image_folder(tmp_path / "dir-scenario" / "pictures")  # a relative folder is found beside the file
    relative = tmp_path / "dir-scenario" / "s.yaml"
    relative.write_text("workload:\n  images: {count: 1, dir: pictures}\n")
    log, _ = run(mock, tmp_path / "r2", "--scenario", str(relative), "-n", "2")
    assert [decoded(user_parts(e.body)[1])[1] for e in log] == files[:2]


def test_images_join_the_last_user_message_of_a_prompts_file(mock, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"messages": [{"role": "system", "content": "be brief"},
                                                {"role": "user", "content": "what is shown"}]}) + "\n")
    log, _ = run(mock, tmp_path / "r", "-n", "1", "--prompts", str(prompts), "--images", "1", "--image-size", "8x8")
    messages = json.loads(log[0].body)["messages"]
    assert messages[0] == {"role": "system", "content": "be brief"}
    assert messages[1]["content"][0] == {"type": "text", "text": "what is shown"}
    assert Image.open(io.BytesIO(decoded(messages[1]["content"][1])[1])).size == (8, 8)


def test_image_memory_is_bounded_and_later_requests_reuse_bodies(monkeypatch) -> None:
    class Config:
        images, image_dir, image_size, image_format, seed = 2, None, "16x16", "png", 0

    assert len(request_images(Config, 10_000)) == MAX_DISTINCT_IMAGES // 2
    every = request_images(Config, 50)  # the default budget holds all 50
    sizes = [sum(map(len, urls)) for urls in every]
    assert len(every) == 50
    monkeypatch.setattr("perfbench.workload.images.IMAGE_BYTES_BUDGET", sizes[0] + sizes[1] + sizes[2] // 2)  # two requests and a half
    assert request_images(Config, 50) == every[:2]  # the requests within the budget, the same images
    monkeypatch.setattr("perfbench.workload.images.IMAGE_BYTES_BUDGET", 1)
    assert request_images(Config, 50) == every[:1]  # at least one, whatever the budget
    assert IMAGE_BYTES_BUDGET >= 2**20


@pytest.mark.parametrize("flags, message", [
    (["--images", "1", "--image-size", "0x10"], "--image-size: 0x10 is out of range; use sides from 1 to 8192 pixels"),
    (["--images", "1", "--image-size", "big"], "--image-size: 'big' is not a size; give WxH, e.g. 512x512"),
    (["--images", "1", "--image-size", "64x64,9000x2"], "9000x2 is out of range"),
    (["--images", "1", "--image-format", "gif"], "invalid choice: 'gif'"),
    (["--images", "65"], "--images 65 is out of range"),
    (["--image-size", "64x64"], "--image-size shapes the images of --images N; add --images N, or drop --image-size"),
    (["--images", "0", "--image-format", "png"], "--image-format shapes the images of --images N"),
    (["--api", "openai-completions", "--images", "1"], "--images sends image_url parts of chat messages, which openai-completions"),
    (["--api", "openai-responses", "--images", "1"], "which openai-responses does not take; use --api openai-chat"),
    (["--api", "openai-embeddings", "--images", "1"], "which openai-embeddings does not take"),
    (["--images", "1", "--image-dir", "{dir}", "--image-size", "8x8"], "--image-size shapes synthetic images; the files of --image-dir"),
    (["--images", "1", "--trace", "prompts/sample-trace.jsonl"], "--images does not go with --trace"),
])
def test_refused_in_one_line(capsys, tmp_path: Path, flags: list[str], message: str) -> None:
    image_folder(tmp_path / "d")
    flags = [f.replace("{dir}", str(tmp_path / "d")) for f in flags]
    assert main(["--url", "http://127.0.0.1:9/v1", *flags, *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_image_folder_problems_are_one_line(capsys, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "x.png").write_text("this is text")
    (tmp_path / "file.png").write_bytes(b"")
    cases = [
        ("empty", "holds no image files (.png, .jpg, .jpeg, .gif, .webp); put images there or give another folder"),
        ("fake", "x.png is not a PNG, JPEG, GIF or WebP image; remove it or replace it"),
        ("missing", "does not exist; give a folder of image files"),
        ("file.png", "is not a folder"),
    ]
    if os.geteuid() != 0:  # root reads any file
        (tmp_path / "locked").mkdir()
        image_folder(tmp_path / "locked" / "in")
        (tmp_path / "locked" / "in" / "a.png").chmod(0)
        cases.append(("locked/in", "cannot read"))
    for folder, message in cases:
        assert main(["--url", "http://127.0.0.1:9/v1", "--images", "1", "--image-dir", str(tmp_path / folder), *QUIET]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (folder, err)


def test_without_pillow_synthetic_images_name_the_extra(capsys, monkeypatch, mock, tmp_path: Path) -> None:
    for name in [m for m in sys.modules if m == "PIL" or m.startswith("PIL.")]:
        monkeypatch.setitem(sys.modules, name, None)  # an import of PIL now fails, as without Pillow
    monkeypatch.setitem(sys.modules, "PIL", None)
    assert main(["--url", mock.base_url, "--images", "1", *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--images needs Pillow" in err and "pip install 'perfbench[images]'" in err, err
    files = image_folder_without_pillow(tmp_path / "files")  # image files need no Pillow
    log, _ = run(mock, tmp_path / "r", "-n", "1", "--images", "1", "--image-dir", str(tmp_path / "files"))
    assert decoded(user_parts(log[0].body)[1]) == ("image/png", files[0])


def image_folder_without_pillow(folder: Path) -> list[bytes]:
    folder.mkdir()
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
    (folder / "one.png").write_bytes(png)
    return [png]


# --------------------------------------------------------------------------- the local transformers server


@contextmanager
def transformers_server(generator) -> Iterator[str]:
    """perfbench's transformers server app for the tiny model on 127.0.0.1, on its own loop; yields its base URL."""
    from aiohttp import web

    from perfbench.servers.transformers_server import create_app

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(create_app(generator, "tiny"))

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_the_transformers_server_refuses_images_for_its_text_only_model(generator, capsys, tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    with transformers_server(generator) as base:
        body = {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}
        request = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 400
        error = json.loads(refused.value.read())["error"]
        assert error["type"] == "BadRequestError" and error["code"] == 400
        assert error["message"] == ("this model is text-only: messages[0].content[1] is an 'image_url' part, "
                                    "which it cannot read; send text content only")
        text_only = {**body, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
        request = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(text_only).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert reply.status == 200  # text parts are still read
        code = main(["--url", base + "/v1/chat/completions", "--model", "tiny", "-n", "2", "--images", "1",
                     "--image-size", "8x8", "--output-dir", str(tmp_path / "r"), "--no-plots", "--no-live", "--no-telemetry"])
    assert code == 3
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("perfbench: error: pre-flight request failed (http_400): HTTP 400: this model is text-only"), line
    assert "(sent by --images (sends image_url parts))" in line and "--no-preflight" in line


def test_the_identity_holds_the_images_only_when_sent(mock, tmp_path: Path) -> None:
    from perfbench.results.identity import run_identity

    def workload(name: str, *flags: str) -> dict:
        run(mock, tmp_path / name, "-n", "1", *flags)
        return json.loads((tmp_path / name / "summary.json").read_text())

    plain = workload("plain")
    assert "images" not in plain["identity"]["workload"]  # runs without images keep the hashes they had
    synthetic = workload("s", "--images", "2", "--image-size", "8x8")
    assert synthetic["identity"]["workload"]["images"] == {"count": 2, "size": "8x8", "format": "png"}
    assert run_identity(synthetic).hash != run_identity(plain).hash
    image_folder(tmp_path / "pictures")
    files = workload("f", "--images", "1", "--image-dir", str(tmp_path / "pictures"))
    digest = files["identity"]["workload"]["images"]["dir_sha256"]
    assert len(digest) == 64
    (tmp_path / "pictures" / "a.png").write_bytes(base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="))
    changed = workload("g", "--images", "1", "--image-dir", str(tmp_path / "pictures"))
    assert changed["identity"]["workload"]["images"]["dir_sha256"] != digest
    assert run_identity(files).hash == files["identity"]["hash"]  # the recorded digest: the files as they were
