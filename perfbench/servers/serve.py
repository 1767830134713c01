"""``perfbench serve``: parse its flags and run one local server in the foreground.

``--engine transformers`` serves the model in this process (perfbench/servers/transformers_server.py);
``--engine vllm`` replaces this process with ``vllm serve`` (perfbench/servers/vllm_launcher.py).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import re

from perfbench.core.cliutil import OneLineArgumentParser
from perfbench.core.errors import ConfigError

ENGINES = ("transformers", "vllm")
DTYPES = ("auto", "bfloat16", "float16", "float32")


def check_transformers_installed() -> None:
    """ConfigError naming the install when torch or transformers is missing (a client install has neither)."""
    if any(importlib.util.find_spec(name) is None for name in ("torch", "transformers")):
        raise ConfigError("the transformers server needs torch and transformers: pip install 'perfbench[transformers]'")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="perfbench serve", description="Start a local OpenAI-compatible server for a model.")
    parser.add_argument("--model", required=True, help="model directory or Hugging Face name in the local cache")
    parser.add_argument("--engine", choices=ENGINES, default="transformers", help="serving engine (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (transformers; default: auto)")
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="weights dtype (transformers; default: auto)")
    parser.add_argument(
        "--max-batch-size", type=int, default=64, help="most sequences decoded together (transformers; default: 64)"
    )
    parser.add_argument("--engine-args", default="", help='extra arguments for vllm serve, one string: "--max-model-len 4096"')
    parser.add_argument(
        "--served-model-name", default=None,
        help="the model's name in the API; requests naming another get 404 (default: the model directory's name; vllm: --model)",
    )  # fmt: skip
    # Set by perfbench when it starts this server for a run (servers/local.py): exit when that
    # process is gone; stdin is then a pipe from it (core/lifetime.py).
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str]) -> int:
    """Run ``perfbench serve`` with ``argv`` (the words after ``serve``); returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.parent_pid is not None:  # first, so that even a slow model load never outlives perfbench
        from perfbench.core.lifetime import exit_with_parent

        exit_with_parent(args.parent_pid)
    if not args.model.strip():
        raise ConfigError("--model is empty; give a model directory or a Hugging Face name")
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a TCP port; use 1-65535")
    if args.max_batch_size < 1:
        raise ConfigError(f"--max-batch-size {args.max_batch_size} must be at least 1")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", args.device):
        raise ConfigError(f"--device {args.device!r} is not one of auto, cpu, cuda, cuda:N")
    if args.engine == "vllm":
        from perfbench.servers.vllm_launcher import vllm_command

        command = vllm_command(args.model, host=args.host, port=args.port, engine_args=args.engine_args)
        if args.served_model_name:
            command += ["--served-model-name", args.served_model_name]
        os.execvp(command[0], command)  # vllm takes over this process: its signals, its exit code
    if args.engine_args:
        raise ConfigError("--engine-args is for --engine vllm; the transformers engine takes --device/--dtype/--max-batch-size")
    check_transformers_installed()
    from perfbench.servers.transformers_server import serve

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(
            serve(
                args.model,
                host=args.host,
                port=args.port,
                device=args.device,
                dtype=args.dtype,
                max_batch_size=args.max_batch_size,
                served_model_name=args.served_model_name,
            )
        )
    except KeyboardInterrupt:
        pass
    return 0
