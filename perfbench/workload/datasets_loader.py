"""Prompts from a dataset (``--dataset NAME_OR_PATH``) through Hugging Face ``datasets``, offline only.

The source, in this order:
- a folder written by ``save_to_disk`` (a Dataset or a DatasetDict): ``load_from_disk``;
- a folder of data files (json, jsonl, csv, parquet, ...; splits from the file names, as
  ``datasets`` infers them): ``load_dataset(folder)``;
- a file, .json, .jsonl, .csv or .parquet: ``load_dataset(builder, data_files=file)``;
- anything else is the name of a dataset already in the local Hugging Face cache.
Nothing is ever downloaded: the hub is offline (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``)
while perfbench loads, and a name not in the cache is a one-line error.

Split: ``--dataset-split``, else ``train`` when there is one, else the only one. Column:
``--dataset-prompt-column COL``, else the first of PROMPT_COLUMNS the dataset has. A value is
- a string: the prompt's text (empty ones are skipped);
- a list of ``{"role", "content"}`` dicts: chat messages, sent up to the last user message (a
  trailing assistant answer is the dataset's, not part of the prompt);
- a list of ``{"from", "value"}`` dicts (ShareGPT): the first human turn, as in a ShareGPT
  prompts file (conversations without one are skipped).
Rows are read in order, only as many as the run needs. ``--output-tokens dataset`` takes each
prompt's output length from the answer that follows it (its words), as for ShareGPT files.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from perfbench.core.errors import ConfigError

log = logging.getLogger(__name__)
from perfbench.core.errors import shown_text
from perfbench.workload.prompts import ASSISTANT_SPEAKERS, HUMAN_SPEAKERS, Prompt, _messages, _sharegpt

DATASETS_MISSING = "--dataset needs Hugging Face datasets, an optional extra: pip install 'perfbench[datasets]'"
PROMPT_COLUMNS = ("messages", "conversations", "prompt", "text", "question", "instruction")
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
_DATASET_ONLY = (("dataset_prompt_column", "--dataset-prompt-column"), ("dataset_split", "--dataset-split"))
# Options that choose the prompts too: (dest, flag).
_OTHER_PROMPTS = (("prompts", "--prompts"), ("input_tokens", "--input-tokens"), ("trace", "--trace"),
                  ("shared_prefix_tokens", "--shared-prefix-tokens"), ("conversations", "--conversations"),
                  ("turns", "--turns"))  # fmt: skip
_BATCH_ROWS = 1024  # rows converted at once
_VALUE_FORMS = "a column of text, chat messages (role/content) or ShareGPT conversations (from/value)"


def check_dataset_settings(settings: Mapping[str, Any]) -> None:
    """Refuse dataset options without --dataset, --dataset beside another prompt source, a path that
    is not there, and --dataset without the datasets package (one line each, naming the fix)."""
    source = settings.get("dataset")
    if source is None:
        for dest, flag in _DATASET_ONLY:
            if settings.get(dest) is not None:
                raise ConfigError(f"{flag} picks from --dataset; add --dataset NAME_OR_PATH, or drop {flag}")
        return
    for dest, flag in (("dataset", "--dataset"), *_DATASET_ONLY):
        if isinstance(settings.get(dest), str) and not settings[dest].strip():
            raise ConfigError(f"{flag} is empty; give a value or drop {flag}")
    for dest, flag in _OTHER_PROMPTS:
        if settings.get(dest):
            raise ConfigError(f"--dataset and {flag} both choose the prompts; give one of them")
    source = str(source)
    if source.startswith(("/", "./", "../", "~")) and not Path(source).expanduser().exists():
        raise ConfigError(f"--dataset {shown_text(source)}: no such file or folder; give a dataset folder, a file or a cached name")
    if not _installed():
        raise ConfigError(DATASETS_MISSING)


def _installed() -> bool:
    try:
        return importlib.util.find_spec("datasets") is not None
    except (ImportError, ValueError):  # an import blocked in sys.modules
        return False


@contextlib.contextmanager
def _offline_datasets() -> Iterator[Any]:
    """The ``datasets`` module with the hub offline and its progress bars and notes quiet, put back after."""
    saved_env = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")  # read when datasets is first imported
    try:
        import datasets
        import huggingface_hub.constants as hub
    except ImportError:
        raise ConfigError(DATASETS_MISSING) from None
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    saved = (datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub.HF_HUB_OFFLINE,
             datasets.utils.logging.get_verbosity(), datasets.utils.is_progress_bar_enabled())  # fmt: skip
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = hub.HF_HUB_OFFLINE = True
    datasets.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    try:
        yield datasets
    finally:
        datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub.HF_HUB_OFFLINE = saved[:3]
        datasets.utils.logging.set_verbosity(saved[3])
        if saved[4]:
            datasets.enable_progress_bars()


def load_dataset_prompts(source: str, *, column: str | None = None, split: str | None = None, limit: int,
                         output_lengths: bool = False) -> list[Prompt]:
    """Up to ``limit`` prompts from the dataset ``source`` (see the module docstring); ConfigError naming the fix."""
    with _offline_datasets() as datasets:
        table = _pick_split(_open(datasets, source), split, source)
        columns = list(table.column_names)
        if column is None:
            column = next((c for c in PROMPT_COLUMNS if c in columns), None)
            if column is None:
                raise ConfigError(f"--dataset {shown_text(source)} has none of the columns {', '.join(PROMPT_COLUMNS)}; "
                                  f"name the prompts' column with --dataset-prompt-column (its columns: {', '.join(columns)})")
        elif column not in columns:
            hint = difflib.get_close_matches(column, columns, n=1)
            raise ConfigError(f"--dataset-prompt-column {shown_text(column)}: {shown_text(source)} has no such column"
                              + (f" (did you mean {hint[0]!r}?)" if hint else "") + f"; its columns: {', '.join(columns)}")
        prompts: list[Prompt] = []
        skipped = 0
        for row, value in enumerate(_values(table, column)):
            prompt = _prompt(value, f"--dataset {shown_text(source)}: row {row}, column {column!r}", output_lengths)
            if prompt is None:
                skipped += 1
                continue
            prompts.append(prompt)
            if len(prompts) >= limit:
                break
    if not prompts:
        raise ConfigError(f"--dataset {shown_text(source)}: column {column!r} holds no prompts ({skipped} rows empty or "
                          f"without a user turn); give --dataset-prompt-column {_VALUE_FORMS}")
    return prompts


def _open(datasets: Any, source: str) -> Any:
    path = Path(source).expanduser()
    try:
        if path.is_dir():
            return datasets.load_from_disk(str(path)) if saved_to_disk(path) else datasets.load_dataset(str(path))
        if path.is_file():
            builder = FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise ConfigError(f"--dataset {shown_text(source)}: a dataset file is .json, .jsonl, .csv or .parquet; "
                                  "convert it, or give a folder")
            return datasets.load_dataset(builder, data_files=str(path))
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds (ValueError, FileNotFoundError, pyarrow's, ...): one line, not a traceback
        log.debug("loading dataset %s failed", source, exc_info=True)
        raise ConfigError(f"--dataset {shown_text(source)}: {_one_line(exc)}; check the dataset's files") from None
    try:
        return datasets.load_dataset(source)  # a name: the local cache only, the hub being offline
    except Exception as exc:  # noqa: BLE001 - as above: whatever datasets raises for a name it cannot load
        log.debug("loading dataset %s by name failed", source, exc_info=True)
        raise ConfigError(f"--dataset {shown_text(source)} is no local folder or file, and not in the local Hugging Face "
                          f"cache ({_one_line(exc)}); perfbench never downloads: load it once online, or give a path") from None


def saved_to_disk(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return (path / "dataset_dict.json").is_file() or ((path / "state.json").is_file() and (path / "dataset_info.json").is_file())


def _pick_split(loaded: Any, split: str | None, source: str) -> Any:
    if not hasattr(loaded, "column_names") or isinstance(loaded.column_names, dict):  # a DatasetDict
        names = list(loaded)
        if split is not None:
            if split not in loaded:
                raise ConfigError(f"--dataset-split {shown_text(split)}: {shown_text(source)} has the splits {', '.join(names)}; "
                                  "pick one of them")
            return loaded[split]
        if "train" in loaded or len(names) == 1:
            return loaded["train" if "train" in loaded else names[0]]
        raise ConfigError(f"--dataset {shown_text(source)} has the splits {', '.join(names)}; pick one with --dataset-split")
    if split is not None and loaded.split is not None and str(loaded.split) != split:
        raise ConfigError(f"--dataset-split {shown_text(split)}: {shown_text(source)} is one split, {loaded.split}; "
                          "drop --dataset-split or name that one")
    return loaded


def _values(table: Any, column: str) -> Iterator[Any]:
    for batch in table.select_columns([column]).iter(batch_size=_BATCH_ROWS):
        yield from batch[column]


def _prompt(value: Any, where: str, output_lengths: bool) -> Prompt | None:
    """One row's prompt; None for a row to skip (empty, no user turn)."""
    if value is None:
        return None
    if isinstance(value, str):
        return Prompt(value, None, None) if value.strip() else None
    if isinstance(value, list) and all(isinstance(item, Mapping) for item in value):
        turns = [{k: v for k, v in item.items() if v is not None} for item in value]  # Arrow structs fill absent keys with None
        if not turns:
            return None
        if any("from" in t or "value" in t for t in turns):
            return _sharegpt(turns, where, output_lengths)
        return _chat(turns, where, output_lengths)
    raise ConfigError(f"{where}: {type(value).__name__} {ascii(value)[:80]} is no prompt; give --dataset-prompt-column {_VALUE_FORMS}")


def _chat(messages: list[dict[str, Any]], where: str, output_lengths: bool) -> Prompt | None:
    """Chat messages up to the last user message; the answer after it gives the output length when asked."""
    last_user = next((i for i in range(len(messages) - 1, -1, -1) if str(messages[i].get("role")).lower() in HUMAN_SPEAKERS), None)
    if last_user is None:
        return None
    kept = _messages(messages[: last_user + 1], where)
    max_tokens = None
    if output_lengths:
        answer = next((m for m in messages[last_user + 1 :] if str(m.get("role")).lower() in ASSISTANT_SPEAKERS), None)
        content = answer.get("content") if answer else None
        if isinstance(content, str):
            max_tokens = len(content.split()) or None
    return Prompt(None, kept, None, max_tokens)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"


# --------------------------------------------------------------------------- identity


def dataset_fingerprint(source: str) -> str | None:
    """What identifies a dataset's content, cheaply: a save_to_disk folder's own fingerprints
    (datasets' state.json), else the SHA-256 of a file's or a folder's files' bytes; None for a
    cached name (the name is its identity) or a path that is gone."""
    path = Path(source).expanduser()
    try:
        if path.is_file():
            return "sha256:" + _sha256([path], path.parent)
        if path.is_dir() and saved_to_disk(path):
            states = sorted(path.glob("state.json")) or sorted(path.glob("*/state.json"))
            return "datasets:" + ",".join(json.loads(s.read_text(encoding="utf-8")).get("_fingerprint", "?") for s in states)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
            return "sha256:" + _sha256(files, path)
    except (OSError, ValueError):
        return None
    return None


def _sha256(files: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for file in files:
        if len(files) > 1:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
