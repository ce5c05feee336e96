"""benchmarks/query_speed.py's renderer: the *peer code* column and section from results/peer_code.json."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "query_speed", Path(__file__).resolve().parent.parent / "benchmarks" / "query_speed.py")
qs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(qs)


def _cell(strategy: str, peer: str, n: int, adakit_cpu: float, peer_cpu: float, **extra) -> dict:
    return {"strategy": strategy, "peer": peer, "n": n, "threads": 1, "b": n // 100, "when": "2026-12-02 02:30 UTC",
            "repo": "https://github.com/tsun/LADA", "commit": "5de718ecd0b1eccc337ff54d4cd854ffb580d7e2",
            "timed": f"{peer} query", "load_start": 5.0, "load_end": 6.0,
            "adakit": {"wall": 2 * adakit_cpu, "cpu": adakit_cpu, "reps": 3, "spread": 0.1},
            "peer_code": {"wall": 2 * peer_cpu, "cpu": peer_cpu, "reps": 3, "spread": 0.1},
            "agreement": {"overlap": 1.0, "same_order": True}, **extra}


PEER = {"cells": [
    _cell("las", "lada", 20000, 1.0, 1.3),
    _cell("las", "lada (KMeans n_init=10)", 20000, 1.0, 1.8),
    _cell("las", "lada (adakit search=ivf, kmeans=faiss)", 20000, 0.1, 1.3),
    _cell("coreset", "lada", 20000, 0.2, 4.8,
          agreement={"overlap": 1.0, "same_order": True, "unfixed_wrong_picks": 200, "unfixed_labelled_picks": 4}),
    _cell("margin", "sdm", 20000, 0.03, 0.039),
]}


def test_peer_column_shows_ratios_dashes_and_not_measured():
    assert qs.peer_column(PEER, 1, 20000, "las") == \
        "LADA 1.3× (1.3× wall; 1.8× with KMeans n_init=10; 13.0× with adakit search=ivf, kmeans=faiss)"
    assert qs.peer_column(PEER, 1, 20000, "coreset") == "LADA 24.0× (24.0× wall)"
    assert qs.peer_column(PEER, 1, 20000, "entropy") == "—"  # no released peer code
    assert qs.peer_column(PEER, 2, 20000, "las") == "not measured"  # peer code exists, other thread count
    assert qs.peer_column(PEER, 1, 200000, "coreset") == "not measured"
    assert qs.peer_column(PEER, 1, 20000, "margin") == "LADA not measured, SDM 1.3× (1.3× wall)"
    assert qs.peer_column(PEER, 1, 20000, "sdm") == "as margin (same code): SDM 1.3× (1.3× wall)"
    assert qs.peer_column({"cells": []}, 1, 20000, "badge") == "not measured"


def test_peer_section_states_the_goal_per_peer_and_the_bugs():
    text = "\n".join(qs.peer_section(PEER))
    met, missed = text.split("**The ≥ 10× goal")[1].split("**Not met**")
    assert "coreset vs LADA: 24.0× CPU" in met and "las vs LADA" not in met
    assert "las vs LADA: 1.3× CPU" in missed and "margin vs SDM: 1.3× CPU" in missed
    assert "200 of 200 picks named the wrong sample (4 of them already labelled)" in text
    assert "#588" in text and "#589" in text and "load average over the cells was 5.0–6.0" in text
    assert "**5 of 5 cells ran beside other work**" in text  # loads 5–6 at one thread
    # each row names its thread count, budget and load (the same (N, strategy, peer) appears once per thread count)
    assert "| 1 | 20,000 | 200 | las | LADA (KMeans n_init=10) |" in text
    assert "| threads | N | b | strategy | peer |" in text and "| no | 5.0→6.0 | 100% (same order) |" in text
    assert "measured on" not in text  # one CPU (none recorded): no machine column
    # an adakit-side variant (its approximate paths) is reported beside the default, never counted as the goal
    las = next(ln for ln in missed.splitlines() if ln.startswith("- las vs LADA"))
    assert "13.0× CPU (13.0× wall) with adakit search=ivf, kmeans=faiss (opt-in approximate path" in las
    assert "1.8× (1.8× wall) against KMeans n_init=10, a scikit-learn version difference" in las
    assert "adakit search=ivf" not in text.split("Bugs found")[1].split("**The ≥ 10×")[0]  # not a restart
    assert "not measured" in "\n".join(qs.peer_section({"cells": []}))
    assert "At 2 threads" not in text  # no 2-thread cells: no 2-thread line


def test_cells_from_two_machines_say_which_measured_each_row():
    intel = {"cpu": "Intel(R) Xeon(R) Processor", "cpu_capability": "AVX512",
             "versions": "torch 2.14.1, numpy 2.4.6, scikit-learn 1.9.1"}
    amd = {"cpu": "AMD EPYC", "cpu_capability": "AVX2", "versions": "torch 2.14.1, numpy 2.4.6, scikit-learn 1.9.1"}
    peer = {"cells": [_cell("las", "lada", 20000, 1.0, 1.3, **intel),
                      {**_cell("margin", "sdm", 20000, 0.003, 0.04, **amd), "when": "2026-12-05 08:40 UTC"}]}
    text = "\n".join(qs.peer_section(peer))
    assert "| agreement | measured on |" in text
    assert "| 100% (same order) | Intel Xeon, AVX512 |" in text and "| 100% (same order) | AMD EPYC, AVX2 |" in text
    assert "AMD EPYC, AVX2 kernels: 1 cells, 2026-12-05 08:40 UTC to 2026-12-05 08:40 UTC" in text
    assert "torch 2.14.1, numpy 2.4.6, scikit-learn 1.9.1" in text  # the versions the cells recorded
    one = "\n".join(qs.peer_section({"cells": [_cell("las", "lada", 20000, 1.0, 1.3, **amd)]}))
    assert "measured on" not in one and "AMD EPYC (AVX2 kernels)" in one


def test_conditions_name_the_cpu_and_tell_idle_cells_from_loaded_ones():
    base = {"threads": 1, "cpu": "Test CPU", "cpu_capability": "AVX2"}
    idle = [{**base, "load_start": 1.0, "load_end": 1.1},
            {**base, "load_start": 1.9, "load_end": 1.2},  # starts high after a two-thread cell: the average lags
            {**base, "threads": 2, "load_start": 2.1, "load_end": 2.4}]
    text = qs.conditions(idle)
    assert text.startswith("Test CPU (AVX2 kernels), ") and "No other work ran beside any cell" in text
    assert "load average over the cells was 1.0–2.4" in text
    busy = qs.conditions([*idle, {**base, "load_start": 3.0, "load_end": 2.5}, {"threads": 1, "load_start": 1.0}])
    assert "**1 of 5 cells ran beside other work**" in busy and "1 cell on a CPU not recorded" in busy
    assert "Test CPU" not in qs.conditions(idle, with_cpu=False)


def test_goal_lists_two_thread_cells_by_their_smaller_ratio():
    two = [dict(_cell("coreset", "lada", 20000, 0.2, 4.8), threads=2),  # 24× CPU, 24× wall
           dict(_cell("margin", "sdm", 20000, 0.03, 0.15), threads=2,  # 5× CPU, 2× wall: the smaller counts
                peer_code={"wall": 0.12, "cpu": 0.15, "reps": 3, "spread": 0.1})]
    line = next(ln for ln in qs._goal(PEER["cells"] + two) if ln.startswith("At 2 threads"))
    assert "marked noise in the table above" in line  # the peer table comes before this summary
    table = "\n".join(qs._peer_table(PEER["cells"] + two))
    assert "| 2 | 20,000 | 200 | coreset | LADA |" in table and "| 1 | 20,000 | 200 | coreset | LADA |" in table
    bugs = "\n".join(qs._peer_bugs(PEER["cells"] + two))  # the same CoreSet picks at 1 and 2 threads: said once
    assert bugs.count("at N = 20,000, 200 of 200 picks named the wrong sample") == 1
    assert "≥ 10× for coreset vs LADA 24.0×;" in line and "below for margin vs SDM 2.0×." in line


def _speed_cell(n: int, strategy: str, **extra) -> dict:
    return {"strategy": strategy, "n": n, "threads": 1, "when": "2026-12-02 03:00 UTC", "backend": "torch", "b": 20,
            "load_start": 1.0, "load_end": 1.5, "adakit": {"wall": 0.5, "cpu": 0.4, "reps": 3, "spread": 0.1},
            "adakit_peak_mb": 3.0, **extra}


def test_committed_cells_keep_their_keys_and_the_committed_table_is_their_rendering(tmp_path, monkeypatch):
    """CPU cells are keyed (threads, N, strategy) as before, GPU cells with their device; the committed table is
    what rendering the committed json gives (no hand edits), wherever it is rendered: the conditions come from
    the cells (their cores and torch), not from the rendering machine."""
    rec = qs.load_records()
    cells = list(rec.get("cells", {}).values())
    cpu = [r for r in cells if qs.on_cpu(r)]
    assert cpu and all(qs._key(r) == (r["threads"], r["n"], r["strategy"]) for r in cpu)
    assert all(qs._key(r) == (r["threads"], r["n"], r["strategy"], r["device"]) for r in cells if not qs.on_cpu(r))
    assert qs._key(_speed_cell(2000, "las", device="cpu")) == (1, 2000, "las")
    committed = qs.MD_OUT.read_text()
    monkeypatch.setattr(qs, "MD_OUT", tmp_path / "query_speed.md")
    monkeypatch.setattr(qs.os, "cpu_count", lambda: 99)
    from adakit.registry import STRATEGIES

    qs.render(rec, STRATEGIES.names())
    assert (tmp_path / "query_speed.md").read_text() == committed


def test_gpu_cells_sit_beside_cpu_cells_and_render_in_their_own_section(tmp_path, monkeypatch):
    monkeypatch.setattr(qs, "JSON_OUT", tmp_path / "query_speed.json")
    monkeypatch.setattr(qs, "MD_OUT", tmp_path / "query_speed.md")
    cpu = _speed_cell(2000, "las")
    gpu = _speed_cell(2000, "las", device="cuda", gpu="NVIDIA H200", adakit_gpu_peak_mb=1234.0,
                      adakit={"wall": 0.02, "cpu": 0.01, "reps": 25, "spread": 0.1})
    names = ["las", "margin"]
    qs.save_records({"cells": {qs._key(cpu): cpu}})
    qs.render(qs.load_records(), names)
    cpu_only = qs.MD_OUT.read_text()
    rec = qs.load_records()
    rec["cells"][qs._key(gpu)] = gpu  # a --device cuda run of the same (threads, N, strategy)
    qs.save_records(rec)
    rec = qs.load_records()
    assert rec["cells"][(1, 2000, "las")] == cpu and rec["cells"][(1, 2000, "las", "cuda")] == gpu
    qs.render(rec, names)
    both = qs.MD_OUT.read_text()
    assert "## On the GPU" not in cpu_only and "## On the GPU" in both

    def table(text):
        return [line for line in text.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]

    assert table(both) == table(cpu_only) and "| 1 | 2,000 | 20 | las | torch | 500.0 ms (×3) |" in table(both)[0]
    section = both.split("## On the GPU")[1].split("## Peer code")[0]
    assert "NVIDIA H200" in section
    assert "| cuda | 1 | 2,000 | 20 | las | torch | 20.0 ms (×25) | 10.0 ms | 1234 MiB | 3 MiB | 1.0→1.5 |" in section


def test_interleaving_check_times_both_sides_alone_and_interleaved():
    line = qs.interleaving_check("margin", 300, reps=2)
    assert line.startswith("margin, N = 300, ") and line.count(" ms alone") == 2 and line.count(" ms interleaved") == 2


def test_child_repeats_adakit_alone_when_the_reference_takes_a_second(monkeypatch):
    # a reference whose call "takes" 2 s is timed once; adakit's fast call is then repeated alone (×r alone)
    ref_calls = []
    fn, what, peak = qs.REFERENCES["margin"]
    monkeypatch.setitem(qs.REFERENCES, "margin", (lambda *a: ref_calls.append(1) or fn(*a), what, peak))
    real = qs._timed

    def timed(f):
        before = len(ref_calls)
        w, c, out = real(f)
        return (2.0, 2.0, out) if len(ref_calls) > before else (0.01, 0.01, out)

    monkeypatch.setattr(qs, "_timed", timed)
    res = qs.child("margin", 300, True, 7)
    assert res["ref"]["reps"] == 1 and not res["ref"]["alone"]
    assert res["adakit"]["reps"] == 7 and res["adakit"]["alone"]
    assert qs._cell(res, "adakit")[0] == "10.0 ms (×7 alone)"
    res["adakit"]["alone"] = False
    assert qs._cell(res, "adakit")[0] == "10.0 ms (×7)"


def test_a_failed_cell_is_rendered_and_makes_the_script_exit_with_status_1(tmp_path, monkeypatch, capsys):
    """A crashed or timed-out cell was only a word in the table: the script exited 0, so gpu_check.sh passed."""
    import pytest

    monkeypatch.setattr(qs, "JSON_OUT", tmp_path / "query_speed.json")
    monkeypatch.setattr(qs, "MD_OUT", tmp_path / "query_speed.md")
    monkeypatch.setattr(qs, "measuring_device", lambda device: device)

    def cell(name, n, threads, timeout, with_ref, reps):
        if name == "las":
            return {**_speed_cell(n, name), "adakit": None, "error": "failed: RuntimeError: out of memory"}
        return _speed_cell(n, name)

    monkeypatch.setattr(qs, "run_cell", cell)
    with pytest.raises(SystemExit) as e:
        qs.main(["--sizes", "2000", "--threads", "1", "--strategies", "margin", "las", "--no-reference"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "1 cell(s) failed or timed out:" in err and "threads=1 N=2000 las: failed: RuntimeError" in err
    assert "margin" not in err and (tmp_path / "query_speed.md").is_file()
    qs.main(["--sizes", "2000", "--threads", "1", "--strategies", "margin", "--no-reference"])  # no failure: exit 0
