"""The Python API: perfbench.run(...) with the CLI's options, perfbench.load_run(DIR) as DataFrames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import perfbench
from perfbench.core.errors import ConfigError
from perfbench.metrics import StepSummary


def test_run_returns_typed_steps_and_load_run_reads_the_folder_back(tmp_path: Path) -> None:
    result = perfbench.run(mock={"ttft_ms": 5, "itl_ms": 1}, concurrency=[1, 2], number=[3, 4], max_tokens=4,
                           slo={"ttft_p99": 500}, plots=False, telemetry=False, output_dir=str(tmp_path / "a"))
    assert result.exit_code == 0 and not result.interrupted
    assert [type(step) for step in result.steps] == [StepSummary, StepSummary]
    assert [step.requests_succeeded for step in result.steps] == [3, 4]
    assert result.steps[1].slo_passed is True and 5 <= result.steps[1].ttft_ms.p50 < 500
    assert json.loads(json.dumps(result.summary)) == json.loads((result.run_dir / "summary.json").read_text())

    run = perfbench.load_run(result.run_dir)
    assert len(run.requests) == 7 and set(run.requests["step"]) == {0, 1}
    assert run.requests.groupby("step")["output_tokens"].sum().tolist() == [12, 16]
    assert run.steps["ttft_ms_p99"].tolist() == [s.ttft_ms.p99 for s in result.steps]

    again = perfbench.run(mock={"ttft_ms": 5, "itl_ms": 1}, number=2, max_tokens=2, plots=False, telemetry=False,
                          output_dir=str(tmp_path / "b"))  # a second call: perfbench.run is still the function
    assert again.steps[0].requests_succeeded == 2


def test_bad_options_raise_the_cli_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown setting 'concurency'; did you mean 'concurrency'"):
        perfbench.run(concurency=4, output_dir=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="--timeout"):
        perfbench.run(timeout_s=-1.0, output_dir=str(tmp_path / "y"))
    with pytest.raises(ConfigError, match="summary.json"):
        perfbench.load_run(tmp_path)
