"""The one table of run options. The command line's flags (cli), the scenario file's keys
(scenario) and the typed run configuration's fields (config) are all derived from it, so an
option is declared once: its flag, its key path in a scenario file, how a value is read and
checked, its type and default.

Every option has a flag and a scenario key, except the few named in ``COMMAND_LINE_ONLY`` and
``FILE_ONLY`` (tests hold the table to that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from perfbench.config import option_values as v
from perfbench.apis import API_NAMES, DEFAULT_API
from perfbench.workload.lengths import MAX_TOKENS_PER_REQUEST
from perfbench.workload.images import IMAGE_FORMATS, MAX_IMAGES_PER_REQUEST, image_size_setting
from perfbench.results.exports import EXPORTERS
from perfbench.workload.schedule import ARRIVALS
from perfbench.workload.sessions import think_time_setting
from perfbench.workload.trace import DEFAULT_BLOCK_TOKENS, window_setting

ENGINES = ("transformers", "vllm")
SEARCHES = ("concurrency", "rate")

# Help groups of ``perfbench --help``, in order.
GROUPS = ("target", "load", "workload", "checks and output")


@dataclass(frozen=True)
class Option:
    dest: str  # the settings key and RunConfig field
    flags: tuple[str, ...]  # command-line spellings; () = scenario file only
    key: str | None  # dotted key path in a scenario file; None = command line only
    group: str  # help group (one of GROUPS)
    help: str
    read: v.Reader = v.text  # a scenario value -> the setting (BadValue when wrong)
    check: v.Number | None = None  # bounds a flag's number is checked against (a file's number is checked by read)
    parse: Mapping[str, Any] = field(default_factory=dict)  # argparse keywords: type, choices, action, metavar, const
    type: str = "str | None"  # RunConfig annotation
    default: Any = None  # RunConfig default (a dict default is copied per config)
    config: bool = True  # a RunConfig field; False: settings turned into other fields (steps, slos) or process options

    @property
    def flag(self) -> str:
        return self.flags[0] if self.flags else self.key or self.dest


def _number(dest: str, flags: tuple[str, ...], key: str, group: str, help: str, number: v.Number, *,
            default: Any = None, metavar: str | None = None) -> Option:
    """A numeric option: the same bounds for the flag and the file value."""
    kind = "int" if number.kind is int else "float"
    parse: dict[str, Any] = {"type": number.kind}
    if metavar:
        parse["metavar"] = metavar
    return Option(dest, flags, key, group, help, read=number, check=number, parse=parse,
                  type=kind if default is not None else f"{kind} | None", default=default)


def _switch_off(dest: str, flag: str, key: str, group: str, help: str) -> Option:
    """An on-by-default behaviour: ``--no-X`` on the command line, ``X: false`` in a file."""
    return Option(dest, (flag,), key, group, help, read=v.boolean, parse={"action": "store_const", "const": False},
                  type="bool", default=True)


_TARGET, _LOAD, _WORKLOAD, _OUTPUT = GROUPS
MIB = 2**20

OPTIONS: tuple[Option, ...] = (
    # target
    Option("url", ("--url",), "target.url", _TARGET,
           "endpoint (…/v1/chat/completions, …/v1/completions, …/v1/responses, …/v1/embeddings) or base URL "
           "(http://host:port[/v1]); without it, perfbench starts a server: for --model, else the built-in mock (simulated)"),
    Option("api", ("--api",), "target.api", _TARGET, "API for a base URL (default openai-chat); a known endpoint path picks it",
           read=v.choice(*API_NAMES), parse={"choices": API_NAMES}, type="str", default=DEFAULT_API),
    Option("model", ("--model",), "target.model", _TARGET,
           "model name sent in requests; without --url, the model (directory or HF cache name) to serve"),
    Option("engine", ("--engine",), "target.engine", _TARGET,
           "local server engine for --model without --url (default transformers)",
           read=v.choice(*ENGINES), parse={"choices": ENGINES}, type="str", default="transformers"),
    Option("engine_args", ("--engine-args",), "target.engine_args", _TARGET,
           "extra arguments for the local server (vllm serve …); in a file a string or a list",
           read=v.engine_args, type="str", default=""),
    Option("device", ("--device",), "target.device", _TARGET, "local transformers server device: auto, cpu, cuda[:N] (default auto)",
           type="str", default="auto"),
    Option("dtype", ("--dtype",), "target.dtype", _TARGET, "local transformers server dtype: auto, bfloat16, float16, float32",
           type="str", default="auto"),
    _number("max_batch_size", ("--max-batch-size",), "target.max_batch_size", _TARGET,
            "local transformers server: most sequences decoded together (default 64)", v.positive_int, default=64, metavar="N"),
    Option("headers", ("--header",), "target.headers", _TARGET, "extra HTTP header (repeatable); in a file a mapping",
           read=v.text_map, parse={"action": "append", "metavar": "'NAME: VALUE'"}, type="Mapping[str, str]", default={}),
    Option("api_key", ("--api-key",), "target.api_key", _TARGET,
           "sent as 'Authorization: Bearer …' (default $OPENAI_API_KEY); never written to any output"),
    Option("tokenizer", ("--tokenizer",), "target.tokenizer", _TARGET,
           "local tokenizer: exact synthetic lengths, token counts when the server sends no usage", parse={"metavar": "PATH"}),
    _number("timeout_s", ("--timeout",), "target.timeout_s", _TARGET, "per-request total timeout (default 600)",
            v.positive_float, default=600.0, metavar="S"),
    _number("connect_timeout_s", ("--connect-timeout",), "target.connect_timeout_s", _TARGET,
            "per-request connect timeout (default 10)", v.positive_float, default=10.0, metavar="S"),
    Option("insecure", ("--insecure",), "target.insecure", _TARGET,
           "https: do not verify the server's certificate (self-signed test servers)",
           read=v.boolean, parse={"action": "store_const", "const": True}, type="bool", default=False),
    Option("ca_cert", ("--ca-cert",), "target.ca_cert", _TARGET,
           "https: verify the server's certificate against the CAs in this PEM file instead of the system's",
           parse={"metavar": "FILE"}),
    _number("max_response_bytes", ("--max-response-bytes",), "target.max_response_bytes", _TARGET,
            "cut and fail a response past B bytes (default 64 MiB; bounds memory)", v.positive_int, default=64 * MIB, metavar="B"),
    _switch_off("preflight", "--no-preflight", "target.preflight", _TARGET,
                "skip the one uncounted request sent before the first step to check the target"),
    # load
    Option("concurrency", ("--concurrency", "-c"), "load.concurrency", _LOAD,
           "requests in flight (closed loop), or the cap with --rate; a list like 1,4,16 runs one step each",
           read=v.list_of(v.positive_int), config=False),
    Option("number", ("--number", "-n"), "load.number", _LOAD,
           "requests per step (default 100); a list pairs with --concurrency/--rate", read=v.list_of(v.positive_int), config=False),
    Option("rate", ("--rate",), "load.rate", _LOAD, "open loop: requests/s (Poisson arrivals); a list runs one step each",
           read=v.list_of(v.positive_float), config=False),
    _number("duration_s", ("--duration",), "load.duration_s", _LOAD, "per-step duration in seconds instead of --number",
            v.positive_float, metavar="S"),
    _number("warmup", ("--warmup",), "load.warmup", _LOAD, "warm-up requests before the first step, excluded from statistics",
            v.nonnegative_int, default=0, metavar="K"),
    Option("arrivals", ("--arrivals",), "load.arrivals", _LOAD, "open-loop arrival process (default poisson)",
           read=v.choice(*ARRIVALS), parse={"choices": ARRIVALS}, type="str", default="poisson"),
    _number("burstiness", ("--burstiness",), "load.burstiness", _LOAD,
            "gamma shape of open-loop intervals: 1 Poisson, <1 burstier, >1 smoother", v.positive_float, default=1.0),
    _number("ramp_up_s", ("--ramp-up",), "load.ramp_up_s", _LOAD, "open loop: raise the rate linearly over S seconds",
            v.nonnegative_float, default=0.0, metavar="S"),
    Option("workers", ("--workers",), "load.workers", _LOAD,
           "worker processes sharing the load, each with its own engine (default 1; auto: the cores the machine can spare; "
           "with --ray: Ray actors, default and auto one per node)",
           read=v.worker_count, parse={"type": v.worker_count_flag, "metavar": "N|auto"}, type="int", default=1),
    Option("ray", ("--ray",), "load.ray", _LOAD,
           "run the workers as Ray actors spread over a cluster's nodes: auto (the cluster this machine is in), "
           "ray://HOST:PORT (Ray Client), HOST:PORT, or local (default: a Ray instance of the run's own on 127.0.0.1); "
           "--workers counts actors (default: one per node); needs pip install 'perfbench[ray]'",
           read=v.ray_address, parse={"type": v.flag_type(v.ray_address), "nargs": "?", "const": v.RAY_LOCAL, "metavar": "ADDRESS"}),
    _switch_off("preconnect", "--no-preconnect", "load.preconnect", _LOAD,
                "open no connections before each step's clock starts (measures cold starts, TCP setup included)"),
    Option("search", ("--search",), "load.search", _LOAD, "find the highest load meeting the step-limit SLOs",
           read=v.choice(*SEARCHES), parse={"choices": SEARCHES}),
    _number("search_start", ("--search-start",), "load.start", _LOAD, "first load the search tries (default 1)",
            v.positive_float, default=1.0),
    _number("search_max", ("--search-max",), "load.max", _LOAD, "highest load the search tries (default 1024)",
            v.positive_float, default=1024.0),
    _number("search_precision", ("--search-precision",), "load.precision", _LOAD, "relative precision of the search (default 0.1)",
            v.Number(float, high=1), default=0.1),
    _number("max_failure_rate", ("--max-failure-rate",), "stop.max_failure_rate", _LOAD,
            "stop a ladder after a step whose failed fraction exceeds F", v.fraction, metavar="F"),
    # workload
    Option("prompts", ("--prompts",), "workload.prompts", _WORKLOAD,
           "prompts: text (one per line), JSONL (prompt or messages), or ShareGPT JSON", parse={"metavar": "FILE"}),
    Option("input_tokens", ("--input-tokens",), "workload.input_tokens", _WORKLOAD,
           "synthetic prompts of this many tokens: 128, uniform:64-256, normal:128,32", read=v.length_distribution,
           parse={"metavar": "DIST"}),
    Option("output_tokens", ("--output-tokens",), "workload.output_tokens", _WORKLOAD,
           "exact output length (sets max_tokens=min_tokens and ignore_eos): 256, uniform:64-512, normal:256,64, "
           "or 'dataset' for each prompt's own (JSONL max_tokens, ShareGPT answer words)", read=v.length_distribution,
           parse={"metavar": "DIST"}),
    _number("max_tokens", ("--max-tokens",), "workload.max_tokens", _WORKLOAD, "cap on output tokens per request (default 128)",
            v.Number(int, high=MAX_TOKENS_PER_REQUEST)),
    _number("batch_size", ("--batch-size",), "workload.batch_size", _WORKLOAD,
            "inputs per request for --api openai-embeddings (default 1)", v.positive_int, default=1, metavar="N"),
    Option("ignore_eos", ("--ignore-eos",), "workload.ignore_eos", _WORKLOAD, "ask the server to ignore EOS (vLLM-style servers)",
           read=v.boolean, parse={"action": "store_const", "const": True}, type="bool", default=False),
    Option("extra_body", ("--extra-body",), "workload.extra_body", _WORKLOAD,
           "JSON object merged into every request body, e.g. '{\"temperature\": 0}'; in a file a mapping",
           read=v.json_object, parse={"metavar": "JSON", "type": v.json_object_flag}, type="Mapping[str, Any]", default={}),
    _number("shared_prefix_tokens", ("--shared-prefix-tokens",), "workload.shared_prefix.tokens", _WORKLOAD,
            "synthetic prompts share a K-token prefix (prefix caching)", v.nonnegative_int, default=0, metavar="K"),
    _number("prefix_groups", ("--prefix-groups",), "workload.shared_prefix.groups", _WORKLOAD,
            "number of distinct shared prefixes (default 1)", v.positive_int, default=1, metavar="N"),
    # images (perfbench/workload/images.py) and datasets (perfbench/workload/datasets_loader.py)
    _number("images", ("--images",), "workload.images.count", _WORKLOAD,
            "images per chat request, as image_url data URLs after the text (synthetic from --seed, or --image-dir files)",
            v.Number(int, low_open=False, high=MAX_IMAGES_PER_REQUEST), metavar="N"),
    Option("image_size", ("--image-size",), "workload.images.size", _WORKLOAD,
           "synthetic image size WxH, or a choice drawn per image: 256x256,512x512 (default 512x512)",
           read=image_size_setting, parse={"type": v.flag_type(image_size_setting), "metavar": "WxH[,WxH...]"}),
    Option("image_format", ("--image-format",), "workload.images.format", _WORKLOAD,
           "synthetic image format (default png); needs Pillow: pip install 'perfbench[images]'",
           read=v.choice(*IMAGE_FORMATS), parse={"choices": IMAGE_FORMATS}),
    Option("image_dir", ("--image-dir",), "workload.images.dir", _WORKLOAD,
           "send these image files (png, jpeg, gif, webp; name order, byte for byte) instead of synthetic images",
           parse={"metavar": "DIR"}),
    Option("dataset", ("--dataset",), "workload.dataset.source", _WORKLOAD,
           "prompts from a Hugging Face dataset, offline: a save_to_disk folder, a folder of data files, a .json/.jsonl/"
           ".csv/.parquet file, or a name in the local cache; needs pip install 'perfbench[datasets]'",
           parse={"metavar": "NAME_OR_PATH"}),
    Option("dataset_prompt_column", ("--dataset-prompt-column",), "workload.dataset.prompt_column", _WORKLOAD,
           "the dataset's prompt column: text, chat messages or ShareGPT conversations (default: the first of "
           "messages, conversations, prompt, text, question, instruction)", parse={"metavar": "COL"}),
    Option("dataset_split", ("--dataset-split",), "workload.dataset.split", _WORKLOAD,
           "the dataset's split (default train, or its only one)", parse={"metavar": "SPLIT"}),
    # end of images and datasets
    Option("trace", ("--trace",), "workload.trace.file", _WORKLOAD,
           "replay a JSONL trace on its own schedule: Mooncake rows (timestamp ms, input_length, output_length, hash_ids) "
           "or timestamp plus prompt/messages", parse={"metavar": "FILE"}),
    _number("trace_speedup", ("--trace-speedup",), "workload.trace.speedup", _WORKLOAD,
            "replay the trace X times faster (default 1)", v.positive_float, default=1.0, metavar="X"),
    Option("trace_window", ("--trace-window",), "workload.trace.window", _WORKLOAD,
           "replay only the rows from START to END seconds into the trace (60:120, 60:, :30)",
           read=window_setting, parse={"type": v.flag_type(window_setting), "metavar": "START:END"}),
    _number("trace_block_tokens", ("--trace-block-tokens",), "workload.trace.block_tokens", _WORKLOAD,
            "tokens per trace hash id (default 512, Mooncake's)", v.Number(int, high=MAX_TOKENS_PER_REQUEST),
            default=DEFAULT_BLOCK_TOKENS, metavar="N"),
    Option("turns", ("--turns",), "workload.sessions.turns", _WORKLOAD,
           "multi-turn sessions of this many user turns (3, uniform:2-6); each turn sends the whole history with "
           "the server's real answers; --number and --concurrency count sessions, --rate new sessions/s",
           read=v.length_distribution, parse={"metavar": "DIST"}),
    Option("conversations", ("--conversations",), "workload.sessions.conversations", _WORKLOAD,
           "multi-turn sessions from a file: JSONL of user-turn lists, OpenAI messages, or ShareGPT conversations",
           parse={"metavar": "FILE"}),
    Option("think_time", ("--think-time",), "workload.sessions.think_time", _WORKLOAD,
           "seconds between an answer and the session's next turn: 2, uniform:1-3, exponential:2 (default 0)",
           read=think_time_setting, parse={"type": v.flag_type(think_time_setting), "metavar": "DIST"}),
    _number("temperature", ("--temperature",), "workload.sampling.temperature", _WORKLOAD,
            "sampling temperature sent with every request (default: not sent, the server's)", v.nonnegative_float),
    _number("top_p", ("--top-p",), "workload.sampling.top_p", _WORKLOAD,
            "nucleus sampling top_p sent with every request (default: not sent)", v.Number(float, high=1)),
    _number("top_k", ("--top-k",), "workload.sampling.top_k", _WORKLOAD,
            "top_k sent with every request (default: not sent; vLLM/SGLang-style servers, -1 = all)",
            v.Number(int, low=-1, low_open=False)),
    _number("seed", ("--seed",), "seed", _WORKLOAD, "seed for prompts and arrivals (default 0)",
            v.Number(int, low_open=False, high=2**63 - 1), default=0),
    # checks and output
    Option("slo", ("--slo",), "slo", _OUTPUT,
           "limits in ms: ttft=500 (per request, gives goodput) or ttft_p99=500 (per step); comma-separated; in a file a mapping",
           read=v.slo_limits, config=False),
    Option("scenario", ("--scenario",), None, _OUTPUT, "scenario YAML (flags override its values)", parse={"metavar": "FILE"},
           config=False),
    Option("output_dir", ("--output-dir",), "output.dir", _OUTPUT, "where files go (default runs/<UTC time>-<name>/)",
           parse={"metavar": "DIR"}),
    Option("name", ("--name",), "name", _OUTPUT, "run name (output folder, history); in a file the default is the file's name"),
    Option("tags", ("--tag",), "output.tags", _OUTPUT, "label the run in the history store (repeatable); in a file a mapping",
           read=v.text_map, parse={"action": "append", "metavar": "KEY=VALUE"}, type="Mapping[str, str]", default={}),
    Option("baseline", ("--baseline",), "output.baseline", _OUTPUT, "compare against this run afterwards; exit 1 on regression",
           parse={"metavar": "DIR|RUN_ID|last|tag:K=V"}),
    Option("allow_mismatch", ("--allow-mismatch",), "output.allow_mismatch", _OUTPUT,
           "compare with a --baseline whose identity (target, model, API, simulated, workload, load) differs, "
           "saying so (refused, exit 2, without it)",
           read=v.boolean, parse={"action": "store_const", "const": True}, type="bool", default=False),
    Option("thresholds", ("--threshold",), "output.thresholds", _OUTPUT,
           "regression thresholds, e.g. ttft_ms.p99=+10%%,output_throughput_tok_s=-5%%; in a file a mapping",
           read=v.thresholds, parse={"metavar": "SPEC"}),
    Option("store", ("--store",), "output.store", _OUTPUT, "history store (SQLite; default in the user data dir)",
           parse={"metavar": "PATH"}),
    Option("junit", ("--junit",), "output.junit", _OUTPUT, "write the baseline checks as JUnit XML", parse={"metavar": "FILE"}),
    Option("export", ("--export",), "output.export", _OUTPUT,
           f"also write the results in another tool's format (repeatable): {', '.join(EXPORTERS)} "
           "(vllm: vllm bench serve --save-result's JSON, one file per step); in a file a list",
           read=v.choices(*EXPORTERS), parse={"action": "append", "choices": tuple(EXPORTERS)},
           type="tuple[str, ...]", default=()),
    _switch_off("plots", "--no-plots", "output.plots", _OUTPUT, "skip plots and report.html"),
    _switch_off("live", "--no-live", "output.live", _OUTPUT, "no live progress display"),
    Option("metrics_url", ("--metrics-url",), "telemetry.metrics_url", _OUTPUT,
           "Prometheus /metrics to sample during the run (default: the target's, when it answers)"),
    _switch_off("telemetry", "--no-telemetry", "telemetry.enabled", _OUTPUT, "no GPU or server metrics sampling"),
    Option("mock", ("--mock",), "mock", _OUTPUT,
           "built-in mock settings for simulated runs, e.g. capacity=8,itl_ms=5,ttft_ms=50 (see perfbench mock --help); "
           "in a file a mapping", read=v.mock_settings, parse={"metavar": "KEY=VALUE,..."}, type="Mapping[str, Any]", default={}),
    Option("debug", ("--debug",), None, _OUTPUT, "log debug messages and show tracebacks", parse={"action": "store_true"},
           config=False),
    Option("description", (), "description", _OUTPUT, "free text for people; ignored", config=False),
)

# Options that only make sense for one invocation, not in a file that describes a run.
COMMAND_LINE_ONLY = frozenset({"scenario", "debug"})
# Scenario keys with no flag: what the file says about itself.
FILE_ONLY = frozenset({"description"})

BY_DEST: Mapping[str, Option] = MappingProxyType({o.dest: o for o in OPTIONS})


def flag_of(dest: str) -> str:
    """The flag users know an option by, for error lines (``timeout_s`` -> ``--timeout``)."""
    return BY_DEST[dest].flag
