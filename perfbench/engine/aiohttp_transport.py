"""The aiohttp transport: what the engine uses when the lean one cannot do the job (a proxy from
the environment, no httptools; perfbench/engine/transport.py chooses).

It reads each answer as the lean transport does: every read's bytes and its stamp, within the same
bounds, ending with the same failures. The stamp is taken when the reading task resumes (a loop
turn after the bytes arrived), which is why this is not the default.
"""

from __future__ import annotations

import asyncio
import ssl
import time

import aiohttp

from perfbench.engine import transport as T
from perfbench.engine.answers import ReadStream, one_line
from perfbench.engine.plan import PreparedRequest, Target
from perfbench.results import records as R


class AiohttpTransport(T.HttpTransport):
    """Requests through one pooled aiohttp session; keep-alive connections are reused across requests and steps."""

    name = T.AIOHTTP

    def __init__(self, target: Target, *, timeout_s: float, connect_timeout_s: float, max_connections: int,
                 ssl_context: ssl.SSLContext | None = None, proxy: str | None = None) -> None:
        self.target = target
        self._proxy = proxy
        self._headers = T.request_headers(target)
        connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=True,
                                         ssl=ssl_context if ssl_context is not None else True)
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        # trust_env: the proxy settings (and .netrc) of the environment apply, as they made this transport the choice.
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False, read_bufsize=2**16,
                                              trust_env=True)

    async def exchange(self, request: PreparedRequest, stream: ReadStream) -> T.ExchangeResult:
        http_status: int | None = None
        failure: T.Failure | None = None
        sent_ns = time.perf_counter_ns()
        try:
            async with self._session.post(self.target.url, data=request.body, headers=self._headers, allow_redirects=False,
                                          proxy=self._proxy) as response:
                http_status = response.status
                headers = response.headers
                content_type = headers.get("Content-Type", "")
                mode, failure = T.answer_mode(response.status, content_type, T.content_encoding(headers.get("Content-Encoding")), stream)
                if mode in (T.ERROR_BODY, T.NOT_SSE):
                    body = await response.content.read(T.ERROR_BODY_BYTES)
                    failure = T.body_failure(mode, response.status, content_type, headers.get("Location"), body)
                elif mode == T.STREAM:
                    failure = await self._read_stream(response, stream)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            failure = T.CONNECT_TIMEOUT if isinstance(exc, aiohttp.ConnectionTimeoutError) else T.timeout_failure(http_status)
        except aiohttp.ClientConnectorError as exc:
            failure = T.connect_failure(exc.os_error or exc)
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            failure = T.cut_failure(http_status, one_line(str(exc).encode()) or type(exc).__name__)
        except aiohttp.ClientError as exc:
            failure = (R.BAD_RESPONSE, f"{type(exc).__name__}: {one_line(str(exc).encode())}")
        except (ValueError, UnicodeError, OSError, RuntimeError) as exc:  # odd headers or framing aiohttp did not wrap
            failure = T.unreadable(exc)
        return http_status, sent_ns, failure

    async def _read_stream(self, response: aiohttp.ClientResponse, stream: ReadStream) -> T.Failure | None:
        """The hot path: stamp each read and keep its bytes, within the response and line bounds."""
        append_chunk, append_ns, clock = stream.chunks.append, stream.read_ns.append, time.perf_counter_ns
        bounds = T.ReadBounds(self.target.max_response_bytes, stream.whole_body)
        async for chunk in response.content.iter_any():
            append_ns(clock())
            append_chunk(chunk)
            if bounds.exceeded(chunk):
                return bounds.failure()
        return None

    async def preconnect(self, connections: int) -> None:
        """Each connection is opened by a bodiless GET of the endpoint (servers answer 405 or 404 at
        once and keep the connection)."""
        limit = self._session.connector.limit if self._session.connector is not None else 0
        count = min(connections, limit) if limit else connections
        timeout = aiohttp.ClientTimeout(total=T.PRECONNECT_TIMEOUT_S)

        async def one() -> None:
            try:
                async with self._session.get(self.target.url, headers=self._headers, timeout=timeout, allow_redirects=False,
                                             proxy=self._proxy) as response:
                    await response.content.read(T.ERROR_BODY_BYTES)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
                pass

        await asyncio.gather(*(one() for _ in range(count)))

    async def aclose(self) -> None:
        await self._session.close()
