"""The run history: a SQLite file recording every run for nightly comparisons and trends.

One row per run (its summary, config, labels, version, target, model, host and GPU) and one
row per tag. The run directory stays the source of per-request data; the store keeps enough
(summary.json) to list runs and draw trends even after a run directory is gone.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from perfbench.results.identity import RunIdentity, run_identity

from perfbench.core.errors import ConfigError
from perfbench.core.redact import redact_url
from perfbench.results.runfiles import read_summary, read_telemetry, step_metric

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    recorded_at TEXT NOT NULL,
    started_at TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    perfbench_version TEXT,
    target_url TEXT,
    api TEXT,
    model TEXT,
    simulated INTEGER NOT NULL DEFAULT 0,
    host TEXT,
    gpu_name TEXT,
    gpu_driver TEXT,
    summary_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
CREATE INDEX IF NOT EXISTS tags_kv ON tags(key, value);
"""


def default_store_path() -> Path:
    """$XDG_DATA_HOME/perfbench/history.sqlite, else ~/.local/share/perfbench/history.sqlite."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "perfbench" / "history.sqlite"


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One recorded run."""

    run_id: str  # "20240501T020000Z-1a2b3c": start time plus a random suffix
    recorded_at: str  # ISO UTC time the run was recorded
    started_at: str  # ISO UTC time the run started (summary.json)
    run_dir: Path  # where its files were (may since have been deleted)
    perfbench_version: str | None
    target_url: str | None
    api: str | None
    model: str | None
    simulated: bool  # run against the built-in mock
    host: str | None  # machine that ran the client
    gpu_name: str | None  # GPU of the server machine, when telemetry saw one
    gpu_driver: str | None
    tags: dict[str, str] = field(default_factory=dict)  # --tag labels
    summary: dict[str, Any] = field(default_factory=dict, repr=False)  # summary.json

    @property
    def config(self) -> dict[str, Any]:
        return self.summary.get("config") or {}

    @property
    def identity(self) -> RunIdentity:
        """Recomputed from the stored summary, so runs recorded before identities existed have one."""
        return run_identity(self.summary)


def _gpu_from_run(run_dir: Path, summary: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """GPU name and driver from the run's telemetry summary or telemetry.jsonl."""
    telemetry = summary.get("telemetry") or {}
    if telemetry.get("gpu_name"):
        return telemetry.get("gpu_name"), telemetry.get("gpu_driver")
    for sample in read_telemetry(run_dir):
        if sample.get("source") == "gpu" and sample.get("name"):
            return sample["name"], sample.get("driver")
    return None, None


class RunStore:
    """The SQLite run history. Each method opens its own short transaction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        _check_store_file(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open run store {self.path}: {exc}; pass a writable --store PATH") from None
        try:
            tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and not {"runs", "tags"} <= tables:  # someone else's database: never add our tables to it
                raise sqlite3.DatabaseError("it holds other tables")
            # A damaged file must be refused here, not half-way through listing or recording a run.
            if self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
        except sqlite3.Error as exc:
            self._db.close()
            raise ConfigError(f"{self.path} is not a perfbench run store ({exc}); pass another --store PATH") from None
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._db.close()
            raise ConfigError(f"cannot open run store {self.path}: {exc}; pass a writable --store PATH") from None
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record_run(self, run_dir: Path, tags: Mapping[str, str] | None = None,
                   local_gpu_info: Callable[[], tuple[str | None, str | None]] | None = None) -> str:
        """Record the run in ``run_dir`` and return its id.

        Recording the same run directory again (same start time) updates its tags and
        summary and keeps its id, so ``perfbench report`` after a run does not duplicate it.
        ``local_gpu_info`` names this machine's GPU for a run made here whose files say none.
        """
        run_dir = Path(run_dir).resolve()
        summary = read_summary(run_dir)
        _redact_summary_urls(summary)  # also a summary written before URLs were redacted
        target = summary.get("target") or {}
        started_at = str(summary.get("started_at") or datetime.now(timezone.utc).isoformat())
        environment = summary.get("environment") or {}
        host = environment.get("host") or socket.gethostname()
        gpu_name, gpu_driver = _gpu_from_run(run_dir, summary)
        if gpu_name is None and host == socket.gethostname() and local_gpu_info is not None:
            gpu_name, gpu_driver = local_gpu_info()
        existing = self._db.execute(
            "SELECT run_id FROM runs WHERE run_dir = ? AND started_at = ?", (str(run_dir), started_at)
        ).fetchone()
        run_id = existing["run_id"] if existing else _new_run_id(started_at)
        row = (
            run_id, datetime.now(timezone.utc).isoformat(timespec="seconds"), started_at, str(run_dir),
            summary.get("perfbench_version"), target.get("url"), target.get("api"), target.get("model"),
            int(bool(target.get("simulated"))), host, gpu_name, gpu_driver, json.dumps(summary),
        )
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            self._db.execute("DELETE FROM tags WHERE run_id = ?", (run_id,))
            self._db.executemany(
                "INSERT INTO tags VALUES (?, ?, ?)", [(run_id, k, str(v)) for k, v in (tags or {}).items()]
            )
        return run_id

    def _rows(self, where: str, params: list[Any], tag: Mapping[str, str] | None, order: str) -> Iterator[RunInfo]:
        clauses = [where] if where else []
        for key, value in (tag or {}).items():
            clauses.append("run_id IN (SELECT run_id FROM tags WHERE key = ? AND value = ?)")
            params = [*params, key, value]
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += f" ORDER BY started_at {order}, recorded_at {order}"
        for row in self._db.execute(sql, params):
            yield self._info(row)

    def _query(
        self, where: str, params: list[Any], tag: Mapping[str, str] | None, order: str, limit: int | None,
        identity: RunIdentity | str | None = None,
    ) -> list[RunInfo]:
        """Runs matching ``where`` and ``tag``; with ``identity`` (an identity, or a hash prefix) only runs of it."""
        if isinstance(identity, RunIdentity):
            # A cheap first cut in SQL (the columns hold these three facts); the hash decides.
            where = " AND ".join(filter(None, [where, "simulated = ? AND api IS ? AND model IS ?"]))
            fields = identity.fields
            params = [*params, int(bool(fields["simulated"])), fields["api"], fields["model"]]
        runs: Iterator[RunInfo] = self._rows(where, params, tag, order)
        if identity is not None:
            wanted = identity.hash if isinstance(identity, RunIdentity) else identity
            runs = (info for info in runs if info.identity.hash.startswith(wanted))
        return list(islice(runs, limit))

    def _info(self, row: sqlite3.Row) -> RunInfo:
        tags = dict(self._db.execute("SELECT key, value FROM tags WHERE run_id = ? ORDER BY key", (row["run_id"],)).fetchall())
        return RunInfo(
            run_id=row["run_id"], recorded_at=row["recorded_at"], started_at=row["started_at"],
            run_dir=Path(row["run_dir"]), perfbench_version=row["perfbench_version"], target_url=row["target_url"],
            api=row["api"], model=row["model"], simulated=bool(row["simulated"]), host=row["host"],
            gpu_name=row["gpu_name"], gpu_driver=row["gpu_driver"], tags=tags, summary=_summary_of(row["summary_json"]),
        )

    def list_runs(
        self, *, tag: Mapping[str, str] | None = None, limit: int = 50, identity: RunIdentity | str | None = None
    ) -> list[RunInfo]:
        """The newest ``limit`` runs (newest first), only those carrying every tag in ``tag`` and,
        given ``identity`` (or the start of an identity hash), only runs of that identity."""
        return self._query("", [], tag, "DESC", limit, identity)

    def get(self, run_id: str) -> RunInfo:
        """The run with this id (a unique prefix will do); ConfigError when there is none."""
        rows = self._query("run_id LIKE ? ESCAPE '\\'", [_like_prefix(run_id)], None, "DESC", 2)
        exact = [r for r in rows if r.run_id == run_id]
        if exact:
            return exact[0]
        if len(rows) == 1:
            return rows[0]
        what = "matches several runs" if rows else "is not in the run store"
        raise ConfigError(f"run id {run_id!r} {what} ({self.path}); list runs with `perfbench history`")

    def get_by_dir(self, run_dir: Path) -> RunInfo | None:
        """The newest run recorded from ``run_dir``; None when it was never recorded."""
        rows = self._query("run_dir = ?", [str(Path(run_dir).resolve())], None, "DESC", 1)
        return rows[0] if rows else None

    def last_run(
        self, *, tag: Mapping[str, str] | None = None, exclude_run_id: str | None = None,
        identity: RunIdentity | None = None, exclude_dir: Path | None = None,
    ) -> RunInfo | None:
        """The most recently started run (with ``tag`` and ``identity``), skipping ``exclude_run_id``
        and runs recorded from ``exclude_dir`` (the new run itself, when it is already recorded)."""
        clauses, params = [], []
        if exclude_run_id:
            clauses.append("run_id != ?")
            params.append(exclude_run_id)
        if exclude_dir is not None:
            clauses.append("run_dir != ?")
            params.append(str(Path(exclude_dir).resolve()))
        rows = self._query(" AND ".join(clauses), params, tag, "DESC", 1, identity)
        return rows[0] if rows else None

    def add_tags(self, run_id: str, tags: Mapping[str, str]) -> RunInfo:
        """Set ``tags`` on a run (a key it has gets the new value); the run as it now is."""
        info = self.get(run_id)
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO tags VALUES (?, ?, ?)",
                                 [(info.run_id, k, str(v)) for k, v in tags.items()])
        return self.get(info.run_id)

    def remove_tags(self, run_id: str, keys: list[str]) -> RunInfo:
        """Take the tags ``keys`` off a run; ConfigError naming a key it does not have."""
        info = self.get(run_id)
        missing = [k for k in keys if k not in info.tags]
        if missing:
            raise ConfigError(f"run {info.run_id} has no tag {', '.join(missing)}; its tags: "
                              f"{', '.join(info.tags) or 'none'}")
        with self._db:
            self._db.executemany("DELETE FROM tags WHERE run_id = ? AND key = ?", [(info.run_id, k) for k in keys])
        return self.get(info.run_id)

    def remove(self, run_id: str) -> RunInfo:
        """Forget a run (its row and tags); its directory is left alone. The run as it was."""
        info = self.get(run_id)
        with self._db:
            self._db.execute("DELETE FROM tags WHERE run_id = ?", (info.run_id,))
            self._db.execute("DELETE FROM runs WHERE run_id = ?", (info.run_id,))
        return info

    def metric_trend(
        self, metric: str, *, tag: Mapping[str, str] | None = None, concurrency: int | None = None,
        identity: RunIdentity | str | None = None,
    ) -> list[tuple[RunInfo, float | None]]:
        """``metric`` ("ttft_ms.p99", "output_throughput_tok_s") of every run, oldest first.

        The value is taken from the step with ``concurrency`` (default: the run's first step);
        None when the run has no such step or metric.
        """
        trend = []
        for info in self._query("", [], tag, "ASC", None, identity):
            steps = info.summary.get("steps") or []
            if concurrency is not None:
                steps = [s for s in steps if s.get("concurrency") == concurrency]
            trend.append((info, step_metric(steps[0], metric) if steps else None))
        return trend


_SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def _check_store_file(path: Path) -> None:
    """ConfigError unless ``path`` is missing, empty, or a SQLite file: sqlite3 would overwrite other files."""
    try:
        if path.is_dir():
            raise ConfigError(f"--store {path} is a folder; give a file path, e.g. {path / 'history.sqlite'}")
        if not path.exists() or path.stat().st_size == 0:
            return
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise ConfigError(f"cannot open run store {path}: {exc.strerror or exc}; pass another --store PATH") from None
    if head != _SQLITE_MAGIC:
        raise ConfigError(f"{path} is not a perfbench run store (not a SQLite file); pass another --store PATH")


def _summary_of(text: Any) -> dict[str, Any]:
    """A stored summary; {} for a row whose JSON was damaged, so one bad row does not hide the others."""
    try:
        summary = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _redact_summary_urls(summary: dict[str, Any]) -> None:
    """Mask a password or secret query value in the summary's URLs before it is stored."""
    for section, key in (("target", "url"), ("config", "url"), ("config", "metrics_url")):
        part = summary.get(section)
        if isinstance(part, dict) and isinstance(part.get(key), str):
            part[key] = redact_url(part[key])


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _new_run_id(started_at: str) -> str:
    try:
        stamp = datetime.fromisoformat(started_at.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        stamp = datetime.now(timezone.utc)
    return f"{stamp:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class NoBaselineYet(ConfigError):
    """``last`` or ``tag:…`` matched no recorded run (e.g. a nightly job's first night)."""


def check_baseline_spec(spec: str) -> None:
    """ConfigError when ``spec`` looks like a path (has a "/" or starts with ".") but names no
    directory: a mistyped run directory must not be reported as an unknown run id."""
    if spec == "last" or spec.startswith("tag:") or Path(spec).is_dir():
        return
    if "/" in spec or os.sep in spec or spec.startswith("."):
        raise ConfigError(
            f"baseline directory {spec} does not exist; pass a run directory, a run id, 'last' or 'tag:K=V'"
        )


def is_store_lookup(spec: str) -> bool:
    """``last`` or ``tag:…`` (not a directory of that name): a baseline the store picks by identity."""
    return (spec == "last" or spec.startswith("tag:")) and not Path(spec).is_dir()


def resolve_baseline(
    spec: str, store: RunStore, *, exclude_run_id: str | None = None,
    identity: RunIdentity | None = None, exclude_dir: Path | None = None,
) -> Path:
    """The run directory a baseline spec names.

    ``spec`` is a run directory, a run id (or unique prefix), ``last`` (the last recorded run
    other than ``exclude_run_id``) or ``tag:KEY=VALUE[,KEY=VALUE]`` (the last run with those tags);
    given ``identity``, ``last`` and ``tag:`` consider only runs of that identity (like for like).
    NoBaselineYet when ``last``/``tag:`` match nothing; ConfigError when an id matches nothing
    or the run's directory is gone, or ``spec`` looks like a path that is not a directory.
    """
    if Path(spec).is_dir():
        return Path(spec)
    check_baseline_spec(spec)
    of = f" of identity {identity.describe()}" if identity is not None else ""
    if spec == "last":
        info = store.last_run(exclude_run_id=exclude_run_id, identity=identity, exclude_dir=exclude_dir)
        if info is None:
            raise NoBaselineYet(f"no run{of} recorded in {store.path} yet; run once without --baseline, or pass a run directory")
    elif spec.startswith("tag:"):
        tag = parse_tags([spec[4:]])
        info = store.last_run(tag=tag, exclude_run_id=exclude_run_id, identity=identity, exclude_dir=exclude_dir)
        if info is None:
            raise NoBaselineYet(f"no run with tag {spec[4:]}{of} in {store.path}; tag a good run with --tag {spec[4:]}")
    else:
        info = store.get(spec)
    provisional = identity is None and (spec == "last" or spec.startswith("tag:"))
    # Before a run its identity is unknown: a `last`/`tag:` pick then only proves the spec can match,
    # and a gone folder of some other project's run must not stop this one.
    if not provisional and not (info.run_dir / "summary.json").exists():
        raise ConfigError(f"baseline run {info.run_id} was in {info.run_dir}, which is gone; pick another run, "
                          f"or forget it with `perfbench history rm {info.run_id}`")
    return info.run_dir


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
