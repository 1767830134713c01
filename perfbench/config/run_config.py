"""The typed run configuration: built once from flags (over a scenario file), validated with
messages that name the fix, then read by every later stage and never changed.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import asdict, dataclass, field, make_dataclass, replace
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from perfbench.apis import API_NAMES, DEFAULT_API, adapter_for_path, get_adapter
from perfbench.workload.datasets_loader import check_dataset_settings
from perfbench.core.errors import ConfigError
from perfbench.workload.images import check_image_settings
from perfbench.config.option_values import BAD_HEADER_VALUE, LARGEST_SETTING, RAY_MISSING, RAY_PER_NODE, check_extra_body, check_path_text, parse_float_list, parse_headers, parse_int_list, parse_mock_settings
from perfbench.workload.lengths import DATASET_LENGTHS, MAX_TOKENS_PER_REQUEST
from perfbench.core.errors import BadValue, shown_text
from perfbench.results.store import parse_tags
from perfbench.config.options import COMMAND_LINE_ONLY, FILE_ONLY, OPTIONS, flag_of
from perfbench.core.redact import redact_url
from perfbench.workload.sampling import check_sampling
from perfbench.workload.sessions import check_session_settings
from perfbench.workload.schedule import ARRIVALS
from perfbench.metrics.slo import Slos, parse_slos
from perfbench.workload.trace import check_trace_settings, replay_load

DEFAULT_NUMBER = 100  # requests per step when neither --number nor --duration is given


@dataclass(frozen=True, slots=True)
class LoadStep:
    """One rung of the load ladder."""

    concurrency: int | None  # closed loop: in flight; open loop: the cap (None: uncapped)
    number: int | None  # requests, or None when bounded by duration
    rate_req_s: float | None  # None: closed loop


class _RunConfigMethods:
    """What a RunConfig can say about itself (its fields come from the option table)."""

    __slots__ = ()

    @property
    def simulated(self) -> bool:
        return self.url is None and self.model is None  # type: ignore[attr-defined]

    def public_dict(self) -> dict[str, Any]:
        """The config as summary.json records it: secrets removed, header values redacted."""
        out = asdict(self)  # type: ignore[call-overload]
        out.pop("api_key")
        out.pop("slos")
        out["headers"] = {k: "<redacted>" for k in out["headers"]}  # any header may carry a credential
        for key in ("url", "metrics_url"):  # a URL's password or ?api_key= stays out of every file
            if out.get(key):
                out[key] = redact_url(out[key])
        return out


def _run_config_fields() -> list[tuple[str, str, Any]]:
    fields = [(o.dest, o.type, field(default_factory=dict) if o.default == {} else field(default=o.default))
              for o in OPTIONS if o.config]
    # Fields computed from several options: the ladder from concurrency/number/rate, the limits from --slo.
    fields += [
        ("steps", "tuple[LoadStep, ...]", field(default=())),
        ("slos", "Slos | None", field(default=None)),
        ("slo_text", "str | None", field(default=None)),  # the limits as --slo text, for the record
    ]
    return fields


# Everything a run needs, one field per option of the table; ``public_dict`` is what summary.json
# records (no secrets). Frozen: built once by ``config_from_settings``, then only read.
RunConfig = make_dataclass("RunConfig", _run_config_fields(), bases=(_RunConfigMethods,), frozen=True)
RunConfig.__module__ = __name__


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
        raise ConfigError(f"--device {shown_text(str(s['device']))} is not one of auto, cpu, cuda, cuda:N")
    if s.get("dtype") is not None and s["dtype"] not in ("auto", "bfloat16", "float16", "float32"):
        raise ConfigError(f"--dtype {shown_text(str(s['dtype']))} is not one of auto, bfloat16, float16, float32")
    if s.get("engine_args"):
        import shlex

        try:
            shlex.split(str(s["engine_args"]))
        except ValueError as exc:
            raise ConfigError(f"--engine-args {shown_text(str(s['engine_args']))}: {exc}; quote it like a shell command line") from None
    prompts = s.get("prompts")
    try:  # /dev/zero or a FIFO would be read forever
        odd_prompts = bool(prompts) and Path(prompts).exists() and not Path(prompts).is_file() and not Path(prompts).is_dir()
    except OSError:
        odd_prompts = False  # the prompts loader names the problem
    if odd_prompts:
        raise ConfigError(f"--prompts {prompts} is not a regular file; pass a prompts file")


def _check_tls(s: Mapping[str, Any]) -> None:
    """--ca-cert must be a PEM file of certificates; --insecure and --ca-cert contradict each other."""
    ca_cert = s.get("ca_cert")
    if not ca_cert:
        return
    if s.get("insecure"):
        raise ConfigError("--insecure turns certificate checks off and --ca-cert sets what they trust; keep one of them")
    check_path_text(str(ca_cert), "--ca-cert")
    import ssl

    try:
        ssl.create_default_context(cafile=str(ca_cert))
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ConfigError(f"--ca-cert {ca_cert}: cannot load its certificates ({reason}); give a PEM file of CA certificates") from None


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


_NAME_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A folder-safe version of a run or model name."""
    return _NAME_SAFE.sub("-", text).strip("-")[:60] or "run"


# What a caller may set: every option of the table but the command line's own and the file's own.
_SETTABLE = tuple(o.dest for o in OPTIONS if o.dest not in COMMAND_LINE_ONLY | FILE_ONLY)

# Text options for which an empty value is a slip (an empty --url has its own message).
_NOT_EMPTY = ("model", "name", "output_dir", "slo", "tokenizer", "prompts", "store", "junit", "baseline", "metrics_url", "trace",
              "ca_cert")


def config_from_settings(settings: Mapping[str, Any]) -> RunConfig:
    """Validate merged settings (scenario values under flags, keyed by the option table's dests) into a RunConfig."""
    s = dict(settings)
    for key in s:
        if key not in _SETTABLE:
            hint = difflib.get_close_matches(str(key), _SETTABLE, n=1)
            raise ConfigError(f"unknown setting {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))

    for option in OPTIONS:  # each number within its option's bounds (a scenario's were checked as read: same bounds)
        if option.check is not None and s.get(option.dest) is not None:
            try:
                option.check.check(s[option.dest])
            except BadValue as exc:
                raise ConfigError(f"{option.flag} {exc}") from None
    for key in _NOT_EMPTY:
        if isinstance(s.get(key), str) and not s[key].strip():
            raise ConfigError(f"{flag_of(key)} is empty; give a value or drop {flag_of(key)}")
    for key, flag in (("output_dir", "--output-dir"), ("store", "--store"), ("junit", "--junit")):
        if s.get(key):
            check_path_text(str(s[key]), flag)
    _check_local_server(s)
    _check_tls(s)

    def as_list(key: str, flag: str, parse: Any) -> list[Any] | None:
        v = s.get(key)
        if v is None:
            return None
        if isinstance(v, (list, tuple)):
            return [parse(str(x), flag)[0] for x in v]
        return parse(str(v), flag)

    check_trace_settings(s)
    if s.get("trace"):  # one open-loop step on the trace's own schedule
        steps = (LoadStep(*replay_load(s, as_list("concurrency", "--concurrency", parse_int_list))),)
    else:
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
    slo = s.get("slo")
    slos = parse_slos(slo) if isinstance(slo, str) and slo else Slos.from_mapping(slo) if isinstance(slo, Mapping) else None
    slo_text = slos.to_text() if slos is not None else None
    if s.get("search") and (slos is None or not slos.step_limits):
        raise ConfigError("--search needs step-limit SLOs to judge each load, e.g. --slo ttft_p99=500,tpot_p99=50")
    if s.get("engine") not in (None, "transformers", "vllm"):
        raise ConfigError(f"--engine {s['engine']!r}: use transformers or vllm")
    if s.get("arrivals") not in (None, *ARRIVALS):
        raise ConfigError(f"--arrivals {s['arrivals']!r}: use {' or '.join(ARRIVALS)}")
    if s.get("output_tokens") == DATASET_LENGTHS and not s.get("prompts") and not s.get("dataset"):
        raise ConfigError(f"--output-tokens {DATASET_LENGTHS} takes each prompt's output length from --prompts or --dataset; "
                          "add --prompts FILE or --dataset NAME_OR_PATH")
    for key, flag in (("input_tokens", "--input-tokens"), ("output_tokens", "--output-tokens")):
        if s.get(key) is not None and s[key] != DATASET_LENGTHS:
            from perfbench.workload.lengths import LengthDistribution

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
    check_sampling(s, get_adapter(api).produces_output, api)
    check_image_settings(s, api)  # --images, --image-size/-format/-dir
    check_dataset_settings(s)  # --dataset, --dataset-prompt-column/-split
    mock = s.get("mock") or {}
    if isinstance(mock, str):
        mock = parse_mock_settings(mock)
    if mock and (url or s.get("model")):
        raise ConfigError("--mock sets up the built-in mock server; drop it, or drop --url/--model")
    api_key = s.get("api_key") or os.environ.get("OPENAI_API_KEY") or None
    if api_key is not None:
        source = "--api-key" if s.get("api_key") else "$OPENAI_API_KEY"
        api_key = api_key.strip()  # a trailing newline from a secrets file is not part of the key
        if BAD_HEADER_VALUE.search(api_key):  # CR/LF inside would split the Authorization header
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
    if s.get("export") is not None:
        s["export"] = tuple(dict.fromkeys(s["export"]))  # --export given twice writes once
    if s.get("ray") is not None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:  # asked now, not imported: Ray's import is slow
            raise ConfigError(RAY_MISSING)
        if s.get("workers") in (None, "auto"):
            s["workers"] = RAY_PER_NODE
    if s.get("workers") == "auto":
        from perfbench.core.limits import available_workers

        s["workers"] = available_workers()
    check_session_settings(s, get_adapter(api).chat_input, api)
    direct = {k: v for k, v in s.items() if k in RunConfig.__dataclass_fields__ and v is not None}
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
        for key, flag in (("max_tokens", "--max-tokens"), ("output_tokens", "--output-tokens"), ("ignore_eos", "--ignore-eos"),
                          ("trace", "--trace")):
            if s.get(key):
                raise ConfigError(f"{flag} sets output lengths, but {adapter.name} generates no output; drop {flag}")
