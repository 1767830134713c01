"""--dataset: prompts from tiny Hugging Face datasets built on disk here (never downloaded), sent to the
real mock: a save_to_disk folder, a folder of data files, each file format, a dataset in the local
cache; text, chat-message and ShareGPT columns; splits; one-line errors; identity and scenarios."""

from __future__ import annotations

import json
import shutil
import socket
import sys
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")

from perfbench.commands.main import main  # noqa: E402
from perfbench.workload.datasets_loader import DATASETS_MISSING, dataset_fingerprint  # noqa: E402
from perfbench.results.identity import run_identity  # noqa: E402
from perfbench.servers.mock import MockConfig, MockInThread  # noqa: E402

QUIET = ["--no-plots", "--no-live", "--no-telemetry", "--no-preflight"]
TEXTS = ["what is a cat", "why is the sky blue", "name three rivers"]
CHATS = [
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello one"}, {"role": "assistant", "content": "hi there you"}],
    [{"role": "user", "content": "hello two", "name": "bob"}],  # Arrow gives every other message "name": None
]
SHAREGPT = [
    [{"from": "system", "value": "be kind"}, {"from": "human", "value": "first question"}, {"from": "gpt", "value": "an answer of five words"}],
    [{"from": "gpt", "value": "no human turn here"}],  # skipped, as in ShareGPT prompts files
    [{"from": "human", "value": "second question"}, {"from": "gpt", "value": "two words"}],
]


@pytest.fixture(autouse=True)
def offline_cache(tmp_path_factory, monkeypatch):
    """A private datasets cache, and no name resolution but 127.0.0.1's: nothing can be downloaded."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-datasets")))
    datasets.disable_progress_bars()  # the datasets built here print none
    real = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise OSError(f"test: no network for {host}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)


@pytest.fixture(scope="module")
def mock():
    with MockInThread(MockConfig(ttft_ms=1, itl_ms=1)) as server:
        server.server.keep_bodies = True
        yield server


def sent(mock, tmp_path: Path, *flags: str, name: str = "r") -> list[dict]:
    """The bodies the mock received for one run (one request at a time, so in order)."""
    mock.server.log.clear()
    code = main(["--url", mock.base_url, "-c", "1", "--max-tokens", "2", "--output-dir", str(tmp_path / name), *flags, *QUIET])
    assert code == 0
    return [json.loads(entry.body) for entry in mock.server.log]


def user_texts(bodies: list[dict]) -> list[str]:
    return [body["messages"][-1]["content"] for body in bodies]


def test_a_save_to_disk_folder_with_a_text_column_in_row_order(mock, tmp_path: Path) -> None:
    datasets.Dataset.from_dict({"id": [1, 2, 3], "question": TEXTS}).save_to_disk(str(tmp_path / "saved"))
    bodies = sent(mock, tmp_path, "--dataset", str(tmp_path / "saved"), "-n", "5")  # 'question' found by itself
    assert [b["messages"] for b in bodies[:3]] == [[{"role": "user", "content": t}] for t in TEXTS]
    assert user_texts(bodies) == TEXTS + TEXTS[:2]  # more requests than rows: the rows in turn
    (tmp_path / "saved").rename(tmp_path / "moved")  # the same data elsewhere: the same prompts
    assert user_texts(sent(mock, tmp_path, "--dataset", str(tmp_path / "moved"), "-n", "3", name="again")) == TEXTS


def test_a_dataset_dict_folder_picks_train_or_the_split_asked_for(mock, tmp_path: Path) -> None:
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"prompt": TEXTS}),
                          "test": datasets.Dataset.from_dict({"prompt": ["held out one"]})}).save_to_disk(str(tmp_path / "dd"))
    assert user_texts(sent(mock, tmp_path, "--dataset", str(tmp_path / "dd"), "-n", "3")) == TEXTS
    assert user_texts(sent(mock, tmp_path, "--dataset", str(tmp_path / "dd"), "--dataset-split", "test", "-n", "1", name="t")) == ["held out one"]


def test_a_folder_of_data_files_with_a_messages_column(mock, tmp_path: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps({"messages": m, "n": i}) + "\n" for i, m in enumerate(CHATS)))
    (folder / "test.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "from test"}], "n": 9}) + "\n")
    bodies = sent(mock, tmp_path, "--dataset", str(folder), "-n", "2")
    # Up to the last user message: the dataset's trailing answer is not part of the prompt.
    assert [b["messages"] for b in bodies] == [CHATS[0][:2], CHATS[1]]
    assert user_texts(sent(mock, tmp_path, "--dataset", str(folder), "--dataset-split", "test", "-n", "1", name="t")) == ["from test"]


def test_sharegpt_conversations_from_a_jsonl_file_with_answer_lengths(mock, tmp_path: Path) -> None:
    path = tmp_path / "share.jsonl"
    path.write_text("".join(json.dumps({"id": i, "conversations": c}) + "\n" for i, c in enumerate(SHAREGPT)))
    bodies = sent(mock, tmp_path, "--dataset", str(path), "-n", "2")
    assert user_texts(bodies) == ["first question", "second question"]  # the first human turn; no human turn: skipped
    exact = sent(mock, tmp_path, "--dataset", str(path), "--output-tokens", "dataset", "-n", "2", name="exact")
    assert [(b["max_tokens"], b["min_tokens"]) for b in exact] == [(5, 5), (2, 2)]  # the answers' words


@pytest.mark.parametrize("kind", ["csv", "parquet", "json"])
def test_csv_parquet_and_json_files_with_a_named_column(mock, tmp_path: Path, kind: str) -> None:
    table = datasets.Dataset.from_dict({"body": TEXTS, "other": ["x", "y", "z"]})
    path = tmp_path / f"data.{kind}"
    if kind == "csv":
        table.to_csv(str(path), index=False)
    elif kind == "parquet":
        table.to_parquet(str(path))
    else:
        path.write_text(json.dumps([{"body": t, "other": "x"} for t in TEXTS]))  # one JSON list
    bodies = sent(mock, tmp_path, "--dataset", str(path), "--dataset-prompt-column", "body", "-n", "3")
    assert user_texts(bodies) == TEXTS


def test_parquet_chat_messages_keep_only_their_own_keys(mock, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"messages": m} for m in CHATS]), tmp_path / "chats.parquet")  # structs: "name" on every message
    bodies = sent(mock, tmp_path, "--dataset", str(tmp_path / "chats.parquet"), "-n", "2")
    assert [b["messages"] for b in bodies] == [CHATS[0][:2], CHATS[1]]  # no "name": null the file never had


def test_a_dataset_already_in_the_local_cache_by_name(mock, tmp_path: Path) -> None:
    """A hub dataset loaded once before lies in the cache as <namespace>___<name>/<config>/<version>/<hash>/:
    made here from a local file exactly as datasets writes it, then found by name with the hub offline."""
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    builder = datasets.load_dataset_builder("json", data_files={"train": str(path)})
    builder.download_and_prepare()
    cached = Path(datasets.config.HF_DATASETS_CACHE) / "perfbench-tests___tiny" / "default" / "0.0.0" / "abc"
    shutil.copytree(builder.cache_dir, cached)
    for arrow in cached.glob("json-*.arrow"):
        arrow.rename(cached / arrow.name.replace("json-", "tiny-"))
    info = json.loads((cached / "dataset_info.json").read_text())
    (cached / "dataset_info.json").write_text(json.dumps({**info, "builder_name": "tiny", "dataset_name": "tiny"}))
    assert user_texts(sent(mock, tmp_path, "--dataset", "perfbench-tests/tiny", "-n", "3")) == TEXTS


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "perfbench-tests/not-cached"], "--dataset 'perfbench-tests/not-cached' is no local folder or file, and not in "
                                                  "the local Hugging Face cache"),
    (["--dataset", "{file}", "--dataset-prompt-column", "qestion"], "--dataset-prompt-column 'qestion': '{file}' has no such "
                                                                    "column (did you mean 'question'?); its columns: id, question"),
    (["--dataset", "{bare}"], "has none of the columns messages, conversations, prompt, text, question, instruction; name the "
                              "prompts' column with --dataset-prompt-column (its columns: id, body)"),
    (["--dataset", "{file}", "--dataset-prompt-column", "id"], "row 0, column 'id': int 1 is no prompt"),
    (["--dataset", "{file}", "--dataset-split", "test"], "--dataset-split 'test': "),
    (["--dataset", "{splits}"], "has the splits a, b; pick one with --dataset-split"),
    (["--dataset", "{empty}"], "column 'prompt' holds no prompts (2 rows empty or without a user turn)"),
])
def test_dataset_problems_are_one_line(capsys, mock, tmp_path: Path, flags: list[str], message: str) -> None:
    places = {"{file}": tmp_path / "q.jsonl", "{bare}": tmp_path / "bare.jsonl", "{splits}": tmp_path / "splits",
              "{empty}": tmp_path / "empty.jsonl"}
    places["{file}"].write_text(json.dumps({"id": 1, "question": "why"}) + "\n")
    places["{bare}"].write_text(json.dumps({"id": 1, "body": "why"}) + "\n")
    places["{empty}"].write_text(json.dumps({"prompt": " "}) + "\n" + json.dumps({"prompt": ""}) + "\n")
    datasets.DatasetDict({"a": datasets.Dataset.from_dict({"text": ["x"]}),
                          "b": datasets.Dataset.from_dict({"text": ["y"]})}).save_to_disk(str(places["{splits}"]))
    flags = [str(places.get(f, f)) for f in flags]
    for key, path in places.items():
        message = message.replace(key, str(path))
    assert main(["--url", mock.base_url, "-n", "1", "--output-dir", str(tmp_path / "r"), *flags, *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "x/y", "--prompts", "prompts/chat-short.txt"], "--dataset and --prompts both choose the prompts; give one of them"),
    (["--dataset", "x/y", "--input-tokens", "64"], "--dataset and --input-tokens both choose the prompts"),
    (["--dataset-prompt-column", "text"], "--dataset-prompt-column picks from --dataset; add --dataset NAME_OR_PATH, or drop"),
    (["--dataset-split", "train"], "--dataset-split picks from --dataset"),
    (["--dataset", "./no/such/folder"], "--dataset './no/such/folder': no such file or folder"),
    (["--dataset", " "], "--dataset is empty"),
])
def test_refused_before_the_run_in_one_line(capsys, flags: list[str], message: str) -> None:
    assert main(["--url", "http://127.0.0.1:9/v1", *flags, *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_without_datasets_the_extra_is_named(capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # an import of datasets now fails, as without the package
    assert main(["--url", "http://127.0.0.1:9/v1", "--dataset", "x/y", *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and DATASETS_MISSING in err and "pip install 'perfbench[datasets]'" in err, err


def test_the_hub_is_offline_only_while_loading(mock, tmp_path: Path) -> None:
    import huggingface_hub.constants as hub

    before = (hub.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "hi"}) + "\n")
    sent(mock, tmp_path, "--dataset", str(path), "-n", "1")
    assert (hub.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE) == before


def test_a_scenario_file_names_the_dataset_beside_itself(mock, tmp_path: Path) -> None:
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "data.jsonl").write_text("".join(json.dumps({"q": t}) + "\n" for t in TEXTS))
    scenario = tmp_path / "suite" / "s.yaml"
    scenario.write_text("workload:\n  dataset: {source: data.jsonl, prompt_column: q}\n")
    assert user_texts(sent(mock, tmp_path, "--scenario", str(scenario), "-n", "3")) == TEXTS


def test_the_identity_holds_the_datasets_fingerprint_and_column(mock, tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": t, "q": t}) + "\n" for t in TEXTS))
    sent(mock, tmp_path, "--dataset", str(path), "-n", "2", name="a")
    first = json.loads((tmp_path / "a" / "summary.json").read_text())
    workload = first["identity"]["workload"]
    assert workload["prompts"] == "dataset" and workload["dataset"] == {
        "name": None, "fingerprint": dataset_fingerprint(str(path)), "column": None, "split": None}
    assert workload["dataset"]["fingerprint"].startswith("sha256:")
    sent(mock, tmp_path, "--dataset", str(path), "-n", "2", "--dataset-prompt-column", "q", name="b")
    second = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert run_identity(first).hash != run_identity(second).hash  # another column, another workload
    path.write_text(json.dumps({"text": "changed"}) + "\n")
    assert dataset_fingerprint(str(path)) != workload["dataset"]["fingerprint"]
    assert run_identity(first).hash == first["identity"]["hash"]  # the recorded fingerprint: the file as it was
    datasets.Dataset.from_dict({"text": TEXTS}).save_to_disk(str(tmp_path / "saved"))
    assert dataset_fingerprint(str(tmp_path / "saved")).startswith("datasets:")
    assert dataset_fingerprint("org/cached-name") is None  # a cached name: the name is its identity
