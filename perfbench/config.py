"""The typed run configuration: built once from flags (over a scenario file), validated with
messages that name the fix, then read by every later stage and never changed.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from perfbench.apis import API_NAMES, DEFAULT_API, adapter_for_path, get_adapter
from perfbench.errors import ConfigError
from perfbench.redact import redact_url
from perfbench.schedule import ARRIVALS
from perfbench.slo import Slos, parse_slos

DEFAULT_NUMBER = 100  # requests per step when neither --number nor --duration is given
LARGEST_SETTING = 1e9  # any count, size or seconds above this is a typo (and overflows timers)
MAX_TOKENS_PER_REQUEST = 1_000_000  # token lengths above this are a typo (prompts are built in memory)
DATASET_LENGTHS = "dataset"  # --output-tokens value: each prompt's own length (JSONL max_tokens, ShareGPT answers)


@dataclass(frozen=True, slots=True)
class LoadStep:
    """One rung of the load ladder."""

    concurrency: int | None  # closed loop: in flight; open loop: the cap (None: uncapped)
    number: int | None  # requests, or None when bounded by duration
    rate_req_s: float | None  # None: closed loop


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; ``public_dict`` is what summary.json records (no secrets)."""

    # target
    url: str | None = None  # full endpoint URL (resolved); None: perfbench starts a server
    api: str = DEFAULT_API  # which API adapter
    model: str | None = None  # model name sent in requests / model to serve
    engine: str = "transformers"  # local server engine when --model and no --url
    engine_args: str = ""  # extra arguments for the local server
    device: str = "auto"  # local transformers server device
    dtype: str = "auto"  # local transformers server dtype
    max_batch_size: int = 64  # local transformers server: sequences decoded together
    headers: Mapping[str, str] = field(default_factory=dict)  # extra HTTP headers
    api_key: str | None = None  # sent as a Bearer token; never written anywhere
    # load
    steps: tuple[LoadStep, ...] = ()  # the ladder, one entry per step
    duration_s: float | None = None  # per-step duration instead of a request count
    warmup: int = 0  # warm-up requests before the first step
    arrivals: str = "poisson"  # open-loop arrivals: poisson (gamma by burstiness) or constant
    burstiness: float = 1.0  # gamma shape for open-loop intervals
    ramp_up_s: float = 0.0  # open-loop linear ramp-up
    timeout_s: float = 600.0  # per-request total timeout
    connect_timeout_s: float = 10.0  # per-request connect timeout
    max_failure_rate: float | None = None  # stop a ladder after a step failing more than this
    max_response_bytes: int = 64 * 2**20  # a response past this is cut and failed (response_too_large)
    preflight: bool = True  # one uncounted request before the first step; its failure is exit 3
    preconnect: bool = True  # open each step's connections before its clock starts (--no-preconnect: cold starts)
    search: str | None = None  # "concurrency" | "rate": max-load search instead of a ladder
    search_start: float = 1.0  # first load the search probes
    search_max: float = 1024.0  # highest load the search probes
    search_precision: float = 0.1  # relative precision of the search result
    # workload
    prompts: str | None = None  # prompts file
    input_tokens: str | None = None  # synthetic prompt length distribution (tokens)
    output_tokens: str | None = None  # exact output length distribution (tokens)
    max_tokens: int | None = None  # cap on output tokens
    ignore_eos: bool = False  # ask the server to ignore EOS (vLLM-style servers)
    batch_size: int = 1  # inputs per request (embeddings API)
    extra_body: Mapping[str, Any] = field(default_factory=dict)  # merged into every request body
    shared_prefix_tokens: int = 0  # synthetic prompts share a prefix of this many tokens
    prefix_groups: int = 1  # number of distinct shared prefixes
    tokenizer: str | None = None  # local tokenizer (exact synthetic lengths, token counts without usage)
    seed: int = 0  # prompts and arrivals
    # checks and outputs
    slos: Slos | None = None  # --slo
    slo_text: str | None = None  # --slo as given, for the record
    name: str | None = None  # run name (output folder, history)
    output_dir: str | None = None  # where files go
    tags: Mapping[str, str] = field(default_factory=dict)  # history labels
    baseline: str | None = None  # compare against this run after the run
    thresholds: str | None = None  # regression thresholds for --baseline
    store: str | None = None  # history store path
    junit: str | None = None  # JUnit XML of the checks
    metrics_url: str | None = None  # Prometheus endpoint to sample during the run
    telemetry: bool = True  # sample GPU / server metrics
    plots: bool = True  # write plots and report.html
    live: bool = True  # live progress display
    mock: Mapping[str, Any] = field(default_factory=dict)  # built-in mock settings (simulated runs)

    @property
    def simulated(self) -> bool:
        return self.url is None and self.model is None

    def public_dict(self) -> dict[str, Any]:
        """The config as summary.json records it: secrets removed, header values redacted."""
        out = asdict(self)
        out.pop("api_key")
        out.pop("slos")
        out["headers"] = {k: "<redacted>" for k in self.headers}  # any header may carry a credential
        for key in ("url", "metrics_url"):  # a URL's password or ?api_key= stays out of every file
            if out.get(key):
                out[key] = redact_url(out[key])
        out["steps"] = [asdict(s) for s in self.steps]
        return out


def resolve_url(url: str, api: str | None) -> tuple[str, str]:
    """Return (full endpoint URL, API name) for a full endpoint or a base URL.

    ``http://h:p/v1/chat/completions`` -> chat; ``.../v1/completions`` -> completions (a prefix
    before them is kept, e.g. ``/openai/v1/chat/completions``); a base -- an empty path or one
    ending in ``/v1`` -- gets the path of ``api`` (default chat). Any other path is refused: a
    typo like ``/v1/chat/completion`` would otherwise become a base and fail every request.
    """
    example = "use e.g. http://127.0.0.1:8000/v1/chat/completions"
    if not url or not url.strip():
        raise ConfigError(f"--url is empty; {example}, or drop --url to run against the built-in mock")
    shown = redact_url(url)  # a URL's password or key never reaches the terminal
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ConfigError(f"--url {shown!r} contains whitespace or control characters; {example}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--url {shown!r} is not a valid URL ({redact_url(str(exc))}); {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--url {shown!r} is not an http(s) URL; {example}")
    del port
    path = parts.path.rstrip("/")
    adapter = adapter_for_path(path)
    if adapter is not None:
        if api is not None and api != adapter.name:
            raise ConfigError(f"--url ends in {adapter.path.removeprefix('/v1')!r} (the {adapter.name} API) but --api is {api}; "
                              "drop --api or fix the URL")
        return urlunsplit(parts._replace(path=path)), adapter.name
    if path != "" and not path.endswith("/v1"):
        known = " or ".join(get_adapter(name).path for name in API_NAMES)
        raise ConfigError(f"--url path {parts.path!r} is not an endpoint perfbench knows; end the URL in {known}, "
                          "or give a base URL (http://host:port or .../v1) and --api")
    api = api or DEFAULT_API
    return urlunsplit(parts._replace(path=path.removesuffix("/v1") + get_adapter(api).path)), api


def build_steps(
    concurrency: list[int] | None, number: list[int] | None, rate: list[float] | None, duration_s: float | None
) -> tuple[LoadStep, ...]:
    """Pair the ladder lists: one value applies to every step; equal lengths pair up."""
    if number is not None and duration_s is not None:
        raise ConfigError("--number and --duration both bound a step; give one of them")
    if number is None and duration_s is None:
        number = [DEFAULT_NUMBER]
    for flag, values in (("--concurrency", concurrency), ("--number", number), ("--rate", rate)):
        if values is not None and not values:
            raise ConfigError(f"{flag} is empty; give a number or a comma-separated list like 1,4,16")
        for v in values or ():
            if v <= 0:
                raise ConfigError(f"{flag} values must be positive (got {v:g})")
            if v > LARGEST_SETTING:
                raise ConfigError(f"{flag} value {v:g} is too large; use values up to {LARGEST_SETTING:g}")
    ladder = rate if rate is not None else (concurrency or [1])
    count = len(ladder)
    for flag, values in (("--concurrency", concurrency), ("--number", number)):
        if values is not None and len(values) not in (1, count):
            lead = "--rate" if rate is not None else "--concurrency"
            raise ConfigError(f"{flag} has {len(values)} values but {lead} has {count}; give one value or {count}")

    def pick(values: list[Any] | None, i: int, default: Any) -> Any:
        if values is None:
            return default
        return values[i] if len(values) > 1 else values[0]

    steps = []
    for i in range(count):
        if rate is not None:
            cap = pick(concurrency, i, None)  # open loop: no cap unless given
            steps.append(LoadStep(concurrency=cap, number=pick(number, i, None), rate_req_s=float(rate[i])))
        else:
            steps.append(LoadStep(concurrency=int(ladder[i]), number=pick(number, i, None), rate_req_s=None))
    return tuple(steps)


def parse_int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected an integer or a comma-separated list like 1,4,16") from None


def parse_float_list(text: str, flag: str) -> list[float]:
    try:
        values = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        values = [math.nan]
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{flag} {text!r}: expected a finite number or a comma-separated list like 1,2.5,10")
    return values


# RFC 7230 token: what a header name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # CR, LF, NUL and other controls (tab is allowed)
# Headers the HTTP client sets from the request itself: a user value would corrupt the framing.
_CLIENT_HEADERS = ("content-length", "transfer-encoding", "host", "connection")


def parse_headers(values: list[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["X-Team: infra"]`` (or a mapping) -> dict; ConfigError for anything that would corrupt every request."""
    if not values:
        return {}
    if isinstance(values, Mapping):
        pairs = [(str(k), str(v)) for k, v in values.items()]
    else:
        pairs = []
        for item in values:
            name, sep, value = item.partition(":")
            if not sep or not name.strip():
                raise ConfigError(f"--header {_shown(item)}: expected 'Name: value'")
            pairs.append((name.strip(), value.strip()))
    headers = {}
    for name, value in pairs:
        if not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"--header {_shown(name)} is not a valid header name; use letters, digits and -, e.g. X-Team")
        if name.lower() in _CLIENT_HEADERS:
            raise ConfigError(f"--header {name}: perfbench sets {name} itself for each request; drop this header")
        if _BAD_HEADER_VALUE.search(value):
            raise ConfigError(f"--header {name}: the value contains a line break, NUL or control character; remove it")
        headers[name] = value
    return headers


def _shown(text: str) -> str:
    """A user's text for an error line: escaped (no raw CR/LF), shortened."""
    return ascii(text[:80])


def check_path_text(path: str, flag: str) -> None:
    """ConfigError for a path the file system cannot hold: NUL bytes, a name over 255 bytes."""
    if "\x00" in path:
        raise ConfigError(f"{flag} contains a NUL byte; give a plain path")
    for part in path.replace(os.sep, "/").split("/"):
        if len(os.fsencode(part)) > 255:
            raise ConfigError(f"{flag}: the name {part[:40]}... is longer than 255 bytes; choose a shorter name")


def check_extra_body(extra: Any) -> None:
    """Refuse --extra-body fields that would make every request fail or be measured wrongly."""
    if not isinstance(extra, Mapping):
        raise ConfigError("--extra-body must be a JSON object like '{\"temperature\": 0}'")
    if "stream" in extra and extra["stream"] is not True:
        raise ConfigError("--extra-body sets stream to something other than true; perfbench measures streamed answers, drop 'stream'")
    if "stream_options" in extra:
        options = extra["stream_options"]
        if not isinstance(options, Mapping) or options.get("include_usage") is not True:
            raise ConfigError('--extra-body replaces stream_options without "include_usage": true, so no usage '
                              'would come back; add "include_usage": true or drop stream_options')
    for key in ("messages", "prompt"):
        if key in extra:
            raise ConfigError(f"--extra-body sets {key!r}, which would replace every prompt; give prompts with --prompts FILE")
    if "model" in extra:
        raise ConfigError("--extra-body sets 'model'; set the model with --model so the run records it")


def parse_tags(values: list[str] | tuple[str, ...] | Mapping[str, str] | None) -> dict[str, str]:
    """``["branch=main", "gpu=h100,suite=nightly"]`` (or a mapping) -> dict; ConfigError naming the bad item."""
    if not values:
        return {}
    if isinstance(values, Mapping):
        return {str(k): str(v) for k, v in values.items()}
    tags: dict[str, str] = {}
    for item in values:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"bad tag {part!r}; write KEY=VALUE, e.g. --tag branch=main")
            tags[key.strip()] = value.strip()
    return tags


def _check_local_server(s: Mapping[str, Any]) -> None:
    """The local server's settings, checked before minutes of model loading."""
    model = s.get("model")
    if model and not s.get("url") and str(model).startswith(("/", "./", "../", "~")):
        # Written as a path (a hub name is "org/name"): a missing folder is a typo, say so before starting a server.
        try:
            missing = not Path(str(model)).expanduser().exists()
        except OSError:
            missing = True
        if missing:
            raise ConfigError(f"--model {model}: no such directory; pass a model directory or a Hugging Face name")
    if s.get("device") is not None and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(s["device"])):
        raise ConfigError(f"--device {_shown(str(s['device']))} is not one of auto, cpu, cuda, cuda:N")
    if s.get("dtype") is not None and s["dtype"] not in ("auto", "bfloat16", "float16", "float32"):
        raise ConfigError(f"--dtype {_shown(str(s['dtype']))} is not one of auto, bfloat16, float16, float32")
    if s.get("engine_args"):
        import shlex

        try:
            shlex.split(str(s["engine_args"]))
        except ValueError as exc:
            raise ConfigError(f"--engine-args {_shown(str(s['engine_args']))}: {exc}; quote it like a shell command line") from None
    prompts = s.get("prompts")
    try:  # /dev/zero or a FIFO would be read forever
        odd_prompts = bool(prompts) and Path(prompts).exists() and not Path(prompts).is_file() and not Path(prompts).is_dir()
    except OSError:
        odd_prompts = False  # the prompts loader names the problem
    if odd_prompts:
        raise ConfigError(f"--prompts {prompts} is not a regular file; pass a prompts file")


def _check_combinations(s: Mapping[str, Any], url: str | None) -> None:
    """Refuse settings that would silently do nothing, naming the missing or extra flag."""
    open_loop = s.get("rate") is not None or s.get("search") == "rate"
    for key, flag in (("ramp_up_s", "--ramp-up"), ("burstiness", "--burstiness"), ("arrivals", "--arrivals")):
        if s.get(key) is not None and not open_loop:
            raise ConfigError(f"{flag} shapes open-loop arrivals; add --rate (or --search rate), or drop {flag}")
    if s.get("arrivals") == "constant" and s.get("burstiness") is not None:
        raise ConfigError("--burstiness shapes Poisson/gamma arrivals; drop it or use --arrivals poisson")
    for key, flag in (("shared_prefix_tokens", "--shared-prefix-tokens"), ("prefix_groups", "--prefix-groups")):
        if s.get(key) is not None and s.get("prompts"):
            raise ConfigError(f"{flag} shapes synthetic prompts; drop it or drop --prompts")
    if url:
        for key, flag in (("engine", "--engine"), ("engine_args", "--engine-args"), ("device", "--device"),
                          ("dtype", "--dtype"), ("max_batch_size", "--max-batch-size")):
            if s.get(key):
                raise ConfigError(f"{flag} configures a server perfbench starts; drop it, or drop --url to serve --model locally")
    if s.get("search") == "concurrency" and s.get("rate") is not None:
        raise ConfigError("--rate does nothing under --search concurrency (the search sets the concurrency of closed-loop steps); "
                          "drop --rate, or use --search rate")
    if s.get("search") == "concurrency" and s.get("concurrency") is not None:
        raise ConfigError("--concurrency does nothing under --search concurrency (the search picks it); "
                          "use --search-start/--search-max, or drop --search")
    if s.get("search") and s.get("max_failure_rate") is not None:
        raise ConfigError("--max-failure-rate stops a ladder, not a search (failing probes are how it searches); drop one of them")
    if s.get("prefix_groups") is not None and not s.get("shared_prefix_tokens"):
        raise ConfigError("--prefix-groups does nothing without --shared-prefix-tokens K; add it or drop --prefix-groups")
    if s.get("metrics_url") and s.get("telemetry") is False:
        raise ConfigError("--metrics-url does nothing with --no-telemetry; drop one of them")
    if s.get("search") == "rate" and s.get("rate") is not None:
        raise ConfigError("--rate does nothing under --search rate (the search picks the rates); use --search-start/--search-max, or drop --rate")
    if not s.get("search"):
        for key, flag in (("search_start", "--search-start"), ("search_max", "--search-max"), ("search_precision", "--search-precision")):
            if s.get(key) is not None:
                raise ConfigError(f"{flag} tunes a max-load search; add --search concurrency|rate, or drop {flag}")
    elif s.get("search_start") is not None and s.get("search_max") is not None and s["search_start"] > s["search_max"]:
        raise ConfigError(f"--search-start ({s['search_start']:g}) is above --search-max ({s['search_max']:g}); lower the start or raise the max")


def parse_mock_settings(text: str) -> dict[str, Any]:
    """``--mock capacity=8,itl_ms=5`` -> {"capacity": 8, "itl_ms": 5.0}; values are numbers or words."""
    settings: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--mock {item!r}: expected key=value, e.g. --mock capacity=8,itl_ms=5")
        for kind in (int, float):
            try:
                settings[key.strip()] = kind(value)
                break
            except ValueError:
                continue
        else:
            settings[key.strip()] = {"true": True, "false": False}.get(value.strip().lower(), value.strip())
    return settings


_NAME_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A folder-safe version of a run or model name."""
    return _NAME_SAFE.sub("-", text).strip("-")[:60] or "run"


def config_from_settings(settings: Mapping[str, Any]) -> RunConfig:
    """Validate merged settings (scenario values under flags, keyed by argparse dest) into a RunConfig."""
    s = dict(settings)

    def positive(key: str, flag: str, *, allow_zero: bool = False) -> None:
        v = s.get(key)
        if v is None:
            return
        if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
            raise ConfigError(f"{flag} must be a finite number {'>= 0' if allow_zero else '> 0'} (got {v})")
        if v > LARGEST_SETTING:  # past this, timers overflow and counts exhaust memory
            raise ConfigError(f"{flag} {v:g} is too large; use a value up to {LARGEST_SETTING:g}")

    for key, flag in (("duration_s", "--duration"), ("timeout_s", "--timeout"), ("connect_timeout_s", "--connect-timeout"),
                      ("max_tokens", "--max-tokens"), ("burstiness", "--burstiness"), ("search_precision", "--search-precision"),
                      ("search_max", "--search-max"), ("search_start", "--search-start"), ("max_batch_size", "--max-batch-size"),
                      ("max_response_bytes", "--max-response-bytes"), ("prefix_groups", "--prefix-groups")):
        positive(key, flag)
    for key, flag in (("warmup", "--warmup"), ("ramp_up_s", "--ramp-up"), ("shared_prefix_tokens", "--shared-prefix-tokens")):
        positive(key, flag, allow_zero=True)
    if s.get("max_tokens") is not None and s["max_tokens"] > MAX_TOKENS_PER_REQUEST:
        raise ConfigError(f"--max-tokens {s['max_tokens']} is above {MAX_TOKENS_PER_REQUEST:,}; lower it")
    seed = s.get("seed")
    if seed is not None and not 0 <= seed < 2**63:
        raise ConfigError(f"--seed {seed} is out of range; use an integer from 0 to 2**63-1")
    for key, flag in (("model", "--model"), ("name", "--name"), ("output_dir", "--output-dir"), ("slo", "--slo"),
                      ("tokenizer", "--tokenizer"), ("prompts", "--prompts"), ("store", "--store"), ("junit", "--junit"),
                      ("baseline", "--baseline"), ("metrics_url", "--metrics-url")):
        if isinstance(s.get(key), str) and not s[key].strip():
            raise ConfigError(f"{flag} is empty; give a value or drop {flag}")
    for key, flag in (("output_dir", "--output-dir"), ("store", "--store"), ("junit", "--junit")):
        if s.get(key):
            check_path_text(str(s[key]), flag)
    _check_local_server(s)

    def as_list(key: str, flag: str, parse: Any) -> list[Any] | None:
        v = s.get(key)
        if v is None:
            return None
        if isinstance(v, (list, tuple)):
            return [parse(str(x), flag)[0] for x in v]
        return parse(str(v), flag)

    steps = build_steps(
        as_list("concurrency", "--concurrency", parse_int_list),
        as_list("number", "--number", parse_int_list),
        as_list("rate", "--rate", parse_float_list),
        s.get("duration_s"),
    )
    if s.get("search") == "rate" and s.get("concurrency") is None:
        steps = tuple(replace(step, concurrency=None) for step in steps)  # rate probes: uncapped unless --concurrency
    url, api = s.get("url"), s.get("api")
    if api is not None and api not in API_NAMES:
        raise ConfigError(f"unknown --api {api!r}; use {' or '.join(API_NAMES)}")
    if url is not None:  # "" too: an empty --url is an error, not "start the mock"
        url, api = resolve_url(str(url), api)
    api = api or DEFAULT_API
    if s.get("search") not in (None, "concurrency", "rate"):
        raise ConfigError(f"--search {s['search']!r}: use concurrency or rate")
    slo_text = s.get("slo")
    slos = parse_slos(slo_text) if isinstance(slo_text, str) and slo_text else None
    if isinstance(slo_text, Mapping):
        slos = Slos.from_mapping(slo_text)
        slo_text = ",".join(f"{k}={v}" for k, v in slo_text.items())
    if s.get("search") and (slos is None or not slos.step_limits):
        raise ConfigError("--search needs step-limit SLOs to judge each load, e.g. --slo ttft_p99=500,tpot_p99=50")
    if s.get("engine") not in (None, "transformers", "vllm"):
        raise ConfigError(f"--engine {s['engine']!r}: use transformers or vllm")
    if s.get("arrivals") not in (None, *ARRIVALS):
        raise ConfigError(f"--arrivals {s['arrivals']!r}: use {' or '.join(ARRIVALS)}")
    if s.get("output_tokens") == DATASET_LENGTHS and not s.get("prompts"):
        raise ConfigError(f"--output-tokens {DATASET_LENGTHS} takes each prompt's output length from --prompts; add --prompts FILE")
    for key, flag in (("input_tokens", "--input-tokens"), ("output_tokens", "--output-tokens")):
        if s.get(key) is not None and s[key] != DATASET_LENGTHS:
            from perfbench.lengths import LengthDistribution

            dist = (LengthDistribution.parse(s[key], name=flag) if not isinstance(s[key], Mapping)
                    else LengthDistribution.from_mapping(s[key], name=flag))
            # An unbounded normal reaches mean + 6 std in practice; synthetic prompts are built in memory.
            largest = dist.high if dist.high is not None else (dist.mean or 0) + 6 * (dist.std or 0)
            if largest > MAX_TOKENS_PER_REQUEST:
                raise ConfigError(f"{flag} {dist} reaches {largest:,.0f} tokens, above {MAX_TOKENS_PER_REQUEST:,}; "
                                  "give smaller lengths (or a normal's max)")
            s[key] = str(dist)
    if s.get("prompts") and s.get("input_tokens"):
        raise ConfigError("--prompts and --input-tokens both choose the prompts; give one of them")
    _check_combinations(s, url)
    if s.get("extra_body") is not None:
        check_extra_body(s["extra_body"])
    if s.get("metrics_url"):
        try:
            metrics_parts = urlsplit(str(s["metrics_url"]))
            metrics_parts.port
        except ValueError:
            metrics_parts = urlsplit("")
        if metrics_parts.scheme not in ("http", "https") or not metrics_parts.hostname:
            raise ConfigError(f"--metrics-url {redact_url(str(s['metrics_url']))!r} is not an http(s) URL; "
                              "use e.g. http://127.0.0.1:8000/metrics")
    _check_api_options(s, get_adapter(api))
    mock = s.get("mock") or {}
    if isinstance(mock, str):
        mock = parse_mock_settings(mock)
    if mock and (url or s.get("model")):
        raise ConfigError("--mock sets up the built-in mock server; drop it, or drop --url/--model")
    api_key = s.get("api_key") or os.environ.get("OPENAI_API_KEY") or None
    if api_key is not None:
        source = "--api-key" if s.get("api_key") else "$OPENAI_API_KEY"
        api_key = api_key.strip()  # a trailing newline from a secrets file is not part of the key
        if _BAD_HEADER_VALUE.search(api_key):  # CR/LF inside would split the Authorization header
            raise ConfigError(f"{source} contains a line break, NUL or control character; pass the key alone")
        if not api_key.isascii() or not api_key:
            raise ConfigError(f"{source} is empty or not ASCII text; pass the key exactly as issued")
    headers = parse_headers(s.get("headers"))
    if url and "@" in urlsplit(url).netloc:
        # The client sends URL credentials as "Authorization: Basic"; a second Authorization fails every request.
        other = "--api-key" if s.get("api_key") else "$OPENAI_API_KEY" if api_key else None
        if other is None and any(name.lower() == "authorization" for name in headers):
            other = "--header Authorization"
        if other:
            raise ConfigError(f"--url carries user:password credentials and {other} sets Authorization too; "
                              f"keep one of them{' (unset OPENAI_API_KEY)' if other.startswith('$') else ''}")
    mfr = s.get("max_failure_rate")
    if mfr is not None and not 0 <= mfr <= 1:
        raise ConfigError(f"--max-failure-rate must be between 0 and 1 (got {mfr})")
    known = {f for f in RunConfig.__dataclass_fields__}
    direct = {k: v for k, v in s.items() if k in known and v is not None}
    direct.update(
        url=url,
        api=api,
        steps=steps,
        slos=slos,
        slo_text=slo_text,
        headers=headers,
        tags=parse_tags(s.get("tags")),
        api_key=api_key,
        mock=mock,
    )
    return RunConfig(**direct)


def _check_api_options(s: Mapping[str, Any], adapter: Any) -> None:
    """Options the chosen API cannot honour are refused, not silently dropped."""
    batch = s.get("batch_size")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ConfigError(f"--batch-size must be a whole number >= 1 (got {batch!r})")
    if batch not in (None, 1) and not adapter.batched:
        raise ConfigError(f"--batch-size applies to APIs that take several inputs per request (openai-embeddings), not {adapter.name}")
    if not adapter.produces_output:
        for key, flag in (("max_tokens", "--max-tokens"), ("output_tokens", "--output-tokens"), ("ignore_eos", "--ignore-eos")):
            if s.get(key):
                raise ConfigError(f"{flag} sets output lengths, but {adapter.name} generates no output; drop {flag}")
