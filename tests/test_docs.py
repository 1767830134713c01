"""The documentation (README.md, docs/, mkdocs.yml): it builds strictly, and it shows what runs.

- ``mkdocs build --strict``: no broken link or anchor, every page in the nav.
- The README's links point at files and headings that exist, and the README stays a front door.
- Every ``perfbench`` line of a ```bash block that targets the built-in mock runs as shown, in a
  subprocess (``python -m perfbench ARGS``) from a copy of scenarios/ and prompts/, with HOME and
  the XDG folders in tmp, plus ``--no-live`` and an ``--output-dir`` under tmp unless the line sets
  one. It must exit 0, or N where its comment says "exit N". A run and the subcommands after it
  (``perfbench report runs/x``) run in order in one folder; such chains run side by side.
- A line is a pattern, shown but not run, when it names ``--url`` or ``--model`` (the reader's own
  server or model) or its comment starts with "pattern". Every flag of a pattern, and of every
  ``perfbench ...`` in inline code, must be in that command's ``--help``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
SUBCOMMANDS = ("mock", "serve", "report", "plot", "compare", "history")
HISTORY_ACTIONS = ("tag", "untag", "rm")
COMMAND_TIMEOUT_S = 240  # the longest doc command (a scenario's search) takes ~20 s on a busy 2-core machine
PARALLEL_CHAINS = 4  # chains run side by side: much of a mock run is waiting on the mock's timings
README_MAX_LINES = 200


@dataclass(frozen=True)
class Command:
    """One ``perfbench ...`` command shown in the docs."""

    page: str  # path relative to the repository, e.g. "docs/nightly.md"
    line: int  # 1-based line where the command starts
    text: str  # the command as shown, continuation lines joined, its comment left out
    comment: str  # its trailing comment ("" when none)

    @property
    def args(self) -> list[str]:
        return shlex.split(self.text)[1:]

    @property
    def flags(self) -> list[str]:
        """Its long flags, without values (``--slo=...`` -> ``--slo``); quoted values such as
        ``--engine-args "--max-model-len 4096"`` are values, not flags."""
        tokens = (token.strip("[]()") for token in self.args)
        return [token.split("=", 1)[0] for token in tokens if re.fullmatch(r"--[a-z0-9][a-z0-9-]*(=.*)?", token)]

    @property
    def subcommand(self) -> tuple[str, ...]:
        """() for a run, ("compare",), ("history", "tag"), ...: whose --help lists its flags."""
        args = self.args
        if not args or args[0] not in SUBCOMMANDS:
            return ()
        if args[0] == "history" and len(args) > 1 and args[1] in HISTORY_ACTIONS:
            return ("history", args[1])
        return (args[0],)

    @property
    def pattern(self) -> bool:
        return bool({"--url", "--model"} & set(self.flags)) or self.comment.lower().startswith("pattern")

    @property
    def expected_exit(self) -> int:
        found = re.search(r"\bexit (\d+)\b", self.comment)
        return int(found.group(1)) if found else 0

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def split_comment(line: str) -> tuple[str, str]:
    """``code  # comment`` -> (code, comment): the first ``#`` outside quotes after a blank."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def _fences(text: str) -> list[tuple[int, str, list[str]]]:
    """Each fenced block as (line of its first content line, its info string, its lines)."""
    blocks, block, info, start = [], None, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            if block is None:
                block, info, start = [], line.strip()[3:].strip(), number + 1
            else:
                blocks.append((start, info, block))
                block = None
        elif block is not None:
            block.append(line)
    return blocks


def bash_commands(path: Path) -> list[Command]:
    """The ``perfbench`` lines of the page's ```bash blocks, in order."""
    page = path.relative_to(ROOT).as_posix()
    commands = []
    for start, info, lines in _fences(path.read_text(encoding="utf-8")):
        if info != "bash":
            continue
        code, first = "", None
        for offset, line in enumerate(lines):
            part, comment = split_comment(line)
            first = offset if first is None else first
            if part.endswith("\\"):  # a continued line: the command goes on
                code += part[:-1].strip() + " "
                continue
            code = (code + part.strip()).strip()
            if code == "perfbench" or code.startswith("perfbench "):
                commands.append(Command(page, start + first, code, comment))
            code, first = "", None
    return commands


def inline_commands(path: Path) -> list[Command]:
    """``perfbench ...`` in the page's inline code (outside fenced blocks)."""
    page = path.relative_to(ROOT).as_posix()
    commands = []
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if not in_fence:
            commands += [Command(page, number, found, "") for found in re.findall(r"`(perfbench(?: [^`]*)?)`", line)]
    return commands


ALL_BASH = [command for path in PAGES for command in bash_commands(path)]
RUNNABLE = [command for command in ALL_BASH if not command.pattern]


def _run_argv(command: Command, out_dir: Path) -> list[str]:
    """The command's own arguments, plus --no-live and --output-dir for a run that sets none."""
    args = command.args
    if not command.subcommand:
        if "--no-live" not in args:
            args += ["--no-live"]
        if "--output-dir" not in command.flags:
            args += ["--output-dir", str(out_dir / f"line{command.line}")]
    return [sys.executable, "-m", "perfbench", *args]


def chains(commands: list[Command]) -> list[list[Command]]:
    """The commands split where a run starts: a run and the subcommands after it that read its folder
    (``perfbench report runs/x``) form one chain, in order; chains share nothing and may run side by side."""
    out: list[list[Command]] = []
    for command in commands:
        if not command.subcommand or not out or out[-1][0].page != command.page:
            out.append([])
        out[-1].append(command)
    return out


def _env(base: Path, matplotlib_dir: Path) -> dict[str, str]:
    """The environment of one chain: nothing written to the user's home or caches."""
    env = dict(os.environ)
    folders = {"HOME": "home", "XDG_DATA_HOME": "data", "XDG_CACHE_HOME": "cache", "XDG_CONFIG_HOME": "config",
               "HF_HOME": "cache/huggingface"}
    for name, folder in folders.items():
        (base / folder).mkdir(parents=True, exist_ok=True)
        env[name] = str(base / folder)
    env["MPLCONFIGDIR"] = str(matplotlib_dir)  # one font cache for all, built before the chains start
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.pop("OPENAI_API_KEY", None)
    return env


@dataclass(frozen=True)
class Outcome:
    returncode: int | None  # None: it ran past COMMAND_TIMEOUT_S
    output: str
    seconds: float


def _run_chain(commands: list[Command], base: Path, matplotlib_dir: Path) -> dict[Command, Outcome]:
    """Run a chain's commands in order, in a folder of their own holding copies of scenarios/ and prompts/."""
    work = base / "work"
    for folder in ("scenarios", "prompts"):
        shutil.copytree(ROOT / folder, work / folder)
    env = _env(base, matplotlib_dir)
    outcomes = {}
    for command in commands:
        start = time.monotonic()
        try:
            done = subprocess.run(_run_argv(command, base / "out"), cwd=work, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
            code, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            code, output = None, "".join(x.decode(errors="replace") if isinstance(x, bytes) else x
                                         for x in (exc.stdout or "", exc.stderr or ""))
        outcomes[command] = Outcome(code, output, time.monotonic() - start)
    return outcomes


@pytest.fixture(scope="module")
def ran(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[Command, Outcome]:
    """Every selected runnable command's outcome. A chain runs up to its last selected command
    (earlier lines included, as a reader would run them); chains run side by side."""
    selected = {item.callspec.params["command"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_command_runs_as_shown"}
    plans = []
    for chain in chains(RUNNABLE):
        last = max((i for i, command in enumerate(chain) if command in selected), default=-1)
        if last >= 0:
            plans.append(chain[: last + 1])
    root = tmp_path_factory.mktemp("docs-commands")
    matplotlib_dir = root / "matplotlib"
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"],
                   env={**os.environ, "MPLCONFIGDIR": str(matplotlib_dir)}, check=True, timeout=120)
    outcomes: dict[Command, Outcome] = {}
    with ThreadPoolExecutor(max_workers=PARALLEL_CHAINS) as pool:
        futures = [pool.submit(_run_chain, chain, root / f"{chain[0].page.replace('/', '-')}-{chain[0].line}",
                               matplotlib_dir) for chain in sorted(plans, key=_expected_seconds, reverse=True)]
        for future in futures:
            outcomes.update(future.result())
    return outcomes


def _expected_seconds(chain: list[Command]) -> int:
    """Longest first: scenario runs (ladders, a search) take the longest."""
    return sum(10 if "--scenario" in command.flags else 1 for command in chain)


@pytest.mark.parametrize("command", RUNNABLE, ids=[f"{c.page}:{c.line}" for c in RUNNABLE])
def test_command_runs_as_shown(command: Command, ran: dict[Command, Outcome]) -> None:
    outcome = ran[command]
    assert outcome.returncode is not None, f"{command}\nran past {COMMAND_TIMEOUT_S} s:\n{outcome.output[-3000:]}"
    assert outcome.returncode == command.expected_exit, (
        f"{command}\nexited {outcome.returncode} after {outcome.seconds:.1f} s, the docs say {command.expected_exit}:\n"
        f"{outcome.output[-3000:]}")


def test_the_docs_show_commands_that_run() -> None:
    """The extraction finds what the pages show: runnable lines on the main pages, no output folder written twice."""
    pages = {command.page for command in RUNNABLE}
    assert {"docs/capacity.md", "docs/nightly.md", "docs/outputs.md", "docs/workloads.md"} <= pages
    assert any(command.expected_exit == 1 for command in RUNNABLE)
    dirs = [arg for command in RUNNABLE for flag, arg in zip(command.args, command.args[1:]) if flag == "--output-dir"]
    assert len(dirs) == len(set(dirs)), f"two commands write the same --output-dir: {sorted(dirs)}"
    assert all(command.pattern for command in ALL_BASH if "--url" in command.text)


_HELP: dict[tuple[str, ...], set[str]] = {}


def _help_flags(subcommand: tuple[str, ...]) -> set[str]:
    """The long flags ``perfbench [SUBCOMMAND] --help`` lists."""
    if subcommand not in _HELP:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        done = subprocess.run([sys.executable, "-m", "perfbench", *subcommand, "--help"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"perfbench {' '.join(subcommand)} --help: {done.stderr[-2000:]}"
        _HELP[subcommand] = set(re.findall(r"--[a-z0-9][a-z0-9-]*", done.stdout))
    return _HELP[subcommand]


def test_every_flag_shown_exists() -> None:
    """Patterns are not run, so their flags are checked against --help, as are the inline ones."""
    commands = ALL_BASH + [command for path in PAGES for command in inline_commands(path)]
    unknown = [f"{command}: {flag}" for command in commands for flag in command.flags
               if flag not in _help_flags(command.subcommand)]
    assert not unknown, "flags not in --help:\n" + "\n".join(unknown)


def slug(heading: str) -> str:
    """A heading's anchor, as mkdocs' toc (and GitHub, for these headings) makes it."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_readme_links_resolve() -> None:
    readme = ROOT / "README.md"
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", readme.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (readme.parent / path) if path else readme
        if not file.is_file():
            broken.append(f"{target}: no such file")
        elif anchor:
            headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), flags=re.M)
            if anchor not in {slug(h) for h in headings}:
                broken.append(f"{target}: no heading #{anchor} in {path}")
    assert not broken, "\n".join(broken)


def test_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
    assert lines[2] == "```bash" and "pip install -e ." in lines[3] and "python -m pytest" in lines[4]


def test_mkdocs_builds_strictly(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[test]' brings it and mkdocs-material)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
               "--site-dir", str(tmp_path / "site")]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()
