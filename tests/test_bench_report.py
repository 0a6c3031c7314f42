"""The benchmark report's arithmetic (benchmarks/bench_report.py), on made-up
results: ratios, the targets table and the host-probe verdict; and that the
suite `fastcap bench` runs imports the installed fastcap wherever it is run.
The suite itself runs with `fastcap bench` (benchmarks/, outside the normal
test run)."""
import json
import pathlib
import subprocess

import pytest

import fastcap
from fastcap.cli import bench

report = bench.load("bench_report")
probes = bench.load("host_probes")


def _b(kind, group, impl, median, **extra):
    return {"group": group, "stats": {"median": median},
            "extra_info": {"kind": kind, "impl": impl, "threads": 2, **extra}}


def _data():
    medians = {  # seconds
        ("train", "train lstm N=100"): {"numpy": 0.30, "numba": 0.20, "cython": 0.25, "torch": 0.34,
                                        "cs231n": 0.80},
        ("train1", "train lstm N=100"): {"numba": 0.30, "cython": 0.45},
        ("train", "train rnn N=100"): {"numpy": 0.12, "numba": 0.10, "torch": 0.16},
        ("sample", "sample lstm batch=1"): {"numba": 0.003, "torch": 0.0105},
        ("kernel", "kernel lstm_cell_forward N=100"): {"numpy": 0.004, "numba": 0.001},
        ("kernel", "kernel lstm_cell_backward N=100"): {"numpy": 0.002, "numba": 0.001},
    }
    flops = {"train lstm N=100": 1.0e10}  # 0.1 s at the probes' mean 100 GFLOP/s
    return {"benchmarks": [_b(k, g, i, m, **({"gemm_flops": flops[g]} if k == "train" and g in flops else {}))
                           for (k, g), by in medians.items() for i, m in by.items()],
            "fastcap_environment": {"threads": {"threads": 2},
                                    "gemm_probe": {"start": {"1": 50.0, "2": 90.0}, "end": {"1": 50.0, "2": 110.0}}}}


def test_target_rows_are_ratios_of_this_runs_medians():
    rows = {label: (target, ratios) for label, target, ratios in
            report.target_rows(report._collect(_data()["benchmarks"]))}
    assert rows["train lstm N=100 vs CS231n-style NumPy"] == (3.0, pytest.approx({"numba": 4.0, "cython": 3.2}))
    assert rows["train lstm N=100 vs PyTorch"] == (1.5, pytest.approx({"numba": 1.7, "cython": 1.36}))
    assert rows["train rnn N=100 vs PyTorch"] == (1.5, pytest.approx({"numba": 1.6}))
    assert rows["sample lstm batch=1 vs PyTorch"] == (2.0, pytest.approx({"numba": 3.5}))
    assert rows["train lstm N=100: 2 threads vs 1"] == (1.7, pytest.approx({"numba": 1.5, "cython": 1.8}))
    # forward and backward summed: (4 + 2) / (1 + 1)
    assert rows["LSTM cell forward + backward N=100 vs fastcap numpy"] == (3.0, pytest.approx({"numba": 3.0}))
    assert "train rnn N=25 vs PyTorch" not in rows  # not measured: no row, not a made-up one


def test_report_states_met_and_not_met(tmp_path):
    path = tmp_path / "benchmark.json"
    path.write_text(json.dumps(_data()))
    text = report.report_markdown(json.loads(path.read_text()))
    line = next(x for x in text.splitlines() if x.startswith("| train lstm N=100 vs PyTorch"))
    assert "1.70x met" in line and "1.36x **not met**" in line
    line = next(x for x in text.splitlines() if x.startswith("| LSTM cell forward + backward"))
    assert "3.00x met" in line


@pytest.mark.parametrize("start, end, flagged", [
    ({"1": 36.0, "2": 70.0}, {"1": 35.0, "2": 68.0}, None),
    ({"1": 36.0, "2": 31.0}, {"1": 35.0, "2": 68.0}, "only 0.86x as fast"),
    ({"1": 36.0, "2": 70.0}, {"1": 35.0, "2": 50.0}, "70 GFLOP/s at the start and 50 at the end"),
])
def test_probe_verdict(start, end, flagged):
    verdict = probes.probe_verdict(start, end, 2)
    assert verdict is None if flagged is None else flagged in verdict


def test_gemm_probe_measures_each_thread_count():
    import importlib.util

    from fastcap.runtime import precision as _precision

    # the bf16 rate where the host has bf16 units and PyTorch measures them
    bf16 = {"bf16_GFLOPs"} if _precision.native_bf16() and importlib.util.find_spec("torch") else set()
    probe = probes.gemm_probe(2, size=64, repeats=1)
    assert set(probe) == {"1", "2", "gemv_GBps", *bf16} and all(v > 0 for v in probe.values())
    assert set(probes.gemm_probe(1, size=64, repeats=1)) == {"1", "gemv_GBps", *bf16}


def test_limit_is_step_time_over_gemm_time_at_the_probed_rate():
    data = _data()
    env = data["fastcap_environment"]
    assert report.gemm_rate(env) == pytest.approx(100e9)
    ((group, need, ratios),) = report.limit_rows(report._collect(data["benchmarks"]), env)
    assert group == "train lstm N=100" and need == pytest.approx(0.1)
    assert ratios == pytest.approx({"numpy": 3.0, "numba": 2.0, "cython": 2.5, "torch": 3.4, "cs231n": 8.0})
    text = report.report_markdown(data)
    line = next(x for x in text.splitlines() if x.startswith("| train lstm N=100 | 100 ms"))
    assert "2.00x **over**" in line and "3.40x **over**" in line



def test_suite_imports_the_fastcap_of_the_command_not_one_in_the_working_directory(tmp_path, monkeypatch):
    """Run from a directory holding another `fastcap/` (a source checkout next to
    a non-editable install), the suite still imports this process's fastcap:
    conftest.py stops the run when fastcap.__file__ differs from the command's."""
    (tmp_path / "fastcap").mkdir()
    (tmp_path / "fastcap" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    runner = bench.load("bench_runner")
    collect = ["--collect-only", "-q", "--benchmark-disable", "-k", "captions_follow_the_layout"]
    cmd, how = runner.suite_command(bench.suite_dir(), collect, threads=1)
    assert how["env"][runner.EXPECT_ENV] == str(pathlib.Path(fastcap.__file__).resolve())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **how)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test_captions_follow_the_layout_and_the_table" in proc.stdout
    # The check itself: told to expect another fastcap, the suite refuses to run.
    how["env"][runner.EXPECT_ENV] = str(tmp_path / "fastcap" / "__init__.py")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **how)
    assert proc.returncode != 0 and "not the fastcap `fastcap bench` runs with" in proc.stdout + proc.stderr


def test_an_installation_without_the_suite_gets_one_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(bench, "suite_dir", lambda: None)
    assert bench.main(["--quick"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastcap bench: error:") and "no benchmark suite" in err and err.count("\n") == 1


def test_bf16_rows_targets_limits_and_thread_table():
    """bf16 implementations get their own rows, their targets (vs PyTorch autocast bf16,
    2x on an AMX host; vs fastcap float32) and the bf16 GEMM rate as their limit."""
    medians = {("train", "train lstm N=25"): {"cython": 0.030, "cython-bf16": 0.015, "torch": 0.06,
                                              "torch-bf16": 0.027},
               ("train1", "train lstm N=25"): {"cython": 0.05, "cython-bf16": 0.026}}
    data = {"benchmarks": [_b(k, g, i, m, **({"gemm_flops": 3.0e9} if k == "train" else {}))
                           for (k, g), by in medians.items() for i, m in by.items()],
            "fastcap_environment": {"threads": {"threads": 2}, "cpu_flags": ["avx512_bf16"],
                                    "gemm_probe": {"start": {"1": 100.0, "2": 150.0, "bf16_GFLOPs": 300.0}}}}
    kinds = report._collect(data["benchmarks"])
    rows = {label: (target, ratios) for label, target, ratios in report.target_rows(kinds, data["fastcap_environment"])}
    assert rows["train lstm N=25 bf16 vs PyTorch autocast bf16"] == (1.5, {"cython": pytest.approx(1.8)})
    assert rows["train lstm N=25 bf16 vs fastcap float32"] == (1.6, {"cython": pytest.approx(2.0)})
    amx = dict(data["fastcap_environment"], cpu_flags=["avx512_bf16", "amx_bf16"])
    assert dict((label, t) for label, t, _ in report.target_rows(kinds, amx))[
        "train lstm N=25 bf16 vs PyTorch autocast bf16"] == 2.0
    (group, need, ratios), = report.limit_rows(kinds, data["fastcap_environment"])
    assert need == pytest.approx(3.0e9 / 150e9)
    assert ratios["cython"] == pytest.approx(0.030 / (3.0e9 / 150e9))
    assert ratios["cython-bf16"] == pytest.approx(0.015 / (3.0e9 / 300e9))
    text = report.report_markdown(data)
    assert "## Thread scaling" in text and "| train lstm N=25 | fastcap cython bf16 | 26 ms | 15 ms | 1.73× |" in text


def test_a_filtered_run_names_what_it_left_out_not_a_missing_backend(tmp_path):
    """`fastcap bench --filter ...` keeps only some rows: the report and the chart say they
    were filtered out (not "no compiled backend was available"), and a Cython that is not
    installed at run time is said so, not "None"."""
    data = _data()
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["kind"] == "train"]
    data["fastcap_bench_meta"] = {"command": "fastcap bench --filter train_step", "filter": "train_step"}
    data["fastcap_environment"]["versions"] = {"cython": None, "numpy": "2.0"}
    text = report.report_markdown(data)
    assert ("- Not in this run: greedy sampling, kernels, GEMM throughput (filtered out by "
            "--filter 'train_step')") in text
    assert "Cython not installed here (it is needed only to build)" in text and "Cython None" not in text
    note = report.kernel_chart_note(data)
    assert note.startswith("no kernel benchmarks in this run") and "filtered out by --filter" in note
    report.write_chart(data, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # kernel rows of the NumPy backend alone: then no compiled backend is the reason
    data = _data()
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["impl"] == "numpy"]
    data["fastcap_environment"]["backends_unavailable"] = {"cython": "not built"}
    assert report.kernel_chart_note(data) == "no compiled backend was available\ncython: not built"
