"""redact.py: a URL's password, user token and secret query values never survive being shown."""

import base64

import pytest

from perfbench.core.redact import MASK, redact_text, redact_url, run_secrets, url_secrets


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://user:s3cretpw@127.0.0.1:8000/v1/chat/completions", "http://***@127.0.0.1:8000/v1/chat/completions"),
        ("https://ghp_tok3n@h.example/v1", "https://***@h.example/v1"),
        ("http://h/v1/completions?api_key=k3yvalue&x=1", "http://h/v1/completions?api_key=***&x=1"),
        ("http://h/v1?access_token=abc123&Signature=zz9", "http://h/v1?access_token=***&Signature=***"),
        ("http://h/v1#access_token=frag123", "http://h/v1#access_token=***"),
        ("http://u:pw123456@h:notaport/v1", "http://***@h:notaport/v1"),  # invalid port: still masked
        ("http://u:p@[::1]:8000/v1", "http://***@[::1]:8000/v1"),
        ("http://127.0.0.1:8000/v1/chat/completions?api-version=2024", "http://127.0.0.1:8000/v1/chat/completions?api-version=2024"),
    ],
)
def test_redact_url_masks_userinfo_and_secret_query_values(url, expected):
    assert redact_url(url) == expected


def test_redact_url_of_an_unparseable_url_still_drops_the_password():
    shown = redact_url("http://user:pw999999@[broken/v1")
    assert "pw999999" not in shown and MASK in shown


def test_url_secrets_lists_every_form_a_server_may_echo():
    url = "http://bob:s3cr%40tpw@h/v1?api_key=k3y%2Bvalue&model=m"
    found = url_secrets(url)
    basic = base64.b64encode(b"bob:s3cr@tpw").decode()  # what the client sends as Authorization: Basic
    for secret in ("s3cr%40tpw", "s3cr@tpw", basic, "k3y%2Bvalue", "k3y+value"):
        assert secret in found
    assert "bob" not in found and "m" not in found  # a user name beside a password is not masked everywhere


def test_user_only_url_token_is_a_secret():
    assert "ghp_tok3n" in url_secrets("https://ghp_tok3n@h/v1")


def test_run_secrets_and_redact_text_mask_longest_first():
    secrets = run_secrets(url="http://u:pw-long-1@h/v1", api_key="sk-abcdef", headers={"Authorization": "Bearer sk-hdr-123"})
    text = redact_text("bad key sk-abcdef; Bearer sk-hdr-123; pw-long-1", secrets)
    assert "sk-abcdef" not in text and "sk-hdr-123" not in text and "pw-long-1" not in text
    assert text.count(MASK) == 3


# ---------------------------------------------------------------- end to end: a real run, every output

import asyncio  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from aiohttp import web  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PASSWORD, QUERY_KEY, API_KEY = "s3cretpw", "k3yvalue", "sk-apikey-777"
BASIC = base64.b64encode(f"user:{PASSWORD}".encode()).decode()


class RecordingServer:
    """A small OpenAI-style streaming server on 127.0.0.1 (own thread) that records what each request carried."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({"authorization": request.headers.get("Authorization", ""), "query": request.query_string})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in ("hello", " world"):
            await response.write(b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % word.encode())
        await response.write(b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\ndata: [DONE]\n\n')
        return response

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    def __enter__(self) -> "RecordingServer":
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)


def _perfbench(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "perfbench", *argv], cwd=REPO, capture_output=True, timeout=180, env=env)


def _leaks(blob: bytes) -> list[str]:
    return [s for s in (PASSWORD, QUERY_KEY, API_KEY, BASIC) if s.encode() in blob]


def test_url_credentials_reach_the_server_and_no_output_holds_them(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    run_dir, store = tmp_path / "run", tmp_path / "history.sqlite"
    with RecordingServer() as server:
        url = f"http://user:{PASSWORD}@127.0.0.1:{server.port}/v1/chat/completions?api_key={QUERY_KEY}"
        run = _perfbench("--url", url, "--number", "4", "--concurrency", "2", "--no-live", "--output-dir", str(run_dir),
                         "--header", f"X-Api-Key: {API_KEY}", "--store", str(store), "--junit", str(tmp_path / "junit.xml"), env=env)
        assert run.returncode == 0, run.stderr.decode()
        # The requests themselves went to the real URL with its credentials.
        assert server.seen and all(s["authorization"] == f"Basic {BASIC}" for s in server.seen[-4:])
        assert all(f"api_key={QUERY_KEY}" in s["query"] for s in server.seen)
        unreachable = _perfbench("--url", url.replace(str(server.port), "9"), "--number", "1", "--no-live",
                                 "--output-dir", str(tmp_path / "run2"), env=env)
    assert unreachable.returncode == 3
    history = _perfbench("history", "--store", str(store), env=env)
    compare = _perfbench("compare", str(run_dir), str(run_dir), env=env)
    assert history.returncode == 0 and compare.returncode == 0, history.stderr + compare.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["target"]["url"] == f"http://***@127.0.0.1:{server.port}/v1/chat/completions?api_key=***"
    assert summary["config"]["url"] == summary["target"]["url"]
    assert (run_dir / "report.html").exists()
    for done in (run, unreachable, history, compare):
        assert _leaks(done.stdout + done.stderr) == [], (done.args, done.stdout[-2000:], done.stderr[-2000:])
    for path in [*tmp_path.rglob("*")]:
        if path.is_file():
            assert _leaks(path.read_bytes()) == [], path


# ---------------------------------------------------------------- a server's text cut: masked first, then cut

from perfbench.core.redact import ERROR_TEXT_CHARS, excerpt  # noqa: E402

CUT_KEY = "sk-Zq7Secret0123456789"


@pytest.mark.parametrize("start", range(ERROR_TEXT_CHARS - len(CUT_KEY) - 10, ERROR_TEXT_CHARS + 11))
def test_a_key_across_the_cut_leaves_no_beginning_of_itself(start):
    # The key at every place around the cut (300): wholly before it, across it, just after it.
    text = "x" * start + CUT_KEY + "y" * 400
    shown = excerpt(text, (CUT_KEY,))
    assert CUT_KEY[:6] not in shown, shown[-40:]
    assert len(shown) <= ERROR_TEXT_CHARS + 1 and shown.endswith("…")
    if start + len(CUT_KEY) <= ERROR_TEXT_CHARS:
        assert MASK in shown  # masked where it was
    assert shown.startswith("x" * min(start, 200))  # the text before the key is kept


def test_a_text_cut_before_it_came_here_loses_a_key_beginning_at_its_end():
    # e.g. an error body read up to its byte bound: the cut is at the text's end, not ours
    assert excerpt("bad key " + CUT_KEY[:9], (CUT_KEY,)) == "bad key ***"
    assert excerpt("bad key " + CUT_KEY[:5], (CUT_KEY,)) == "bad key " + CUT_KEY[:5]  # 5 characters say nothing
    assert excerpt("bad key " + CUT_KEY, (CUT_KEY,)) == "bad key ***"


def test_an_excerpt_is_one_line_and_reads_a_bounded_part_of_a_huge_text():
    assert excerpt("a\n\n b\tc", ()) == "a b c"
    spaced = " " * 5000 + CUT_KEY  # collapsed it is short, but the read bound cuts the key
    assert CUT_KEY[:6] not in excerpt(spaced, (CUT_KEY,))
    assert excerpt("z" * 10**7, (), 40) == "z" * 40 + "…"
