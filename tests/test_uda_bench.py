"""benchmarks/uda.py: one table per suite, per-run wall time, resumable, the hand-written discussion kept."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    sys.path.insert(0, str(BENCH))  # uda_confidence imports uda from beside it
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_grid_writes_one_table_per_suite_and_keeps_the_discussion(office31_features, data_root, tmp_path):
    if not (data_root / "digits").is_dir():
        pytest.skip("digits data not found")
    uda = load("uda")
    out, results = tmp_path / "runs", tmp_path / "uda.md"
    args = ["--out", str(out), "--pairs", "amazon-webcam", "--digits", "mnist-usps", "--methods", "source_only",
            "dann", "--seeds", "0", "--iters", "4", "--digits-iters", "3", "--device", "cpu",
            "--timing-steps", "2", "--timing-repeats", "1", "--results", str(results)]
    uda.main(args)
    runs = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*/seed-0"))
    assert runs == ["amazon-webcam/dann/seed-0", "amazon-webcam/source_only/seed-0",
                    "mnist-usps/dann/seed-0", "mnist-usps/source_only/seed-0"]
    assert all(float((out / r / uda.WALL_FILE).read_text()) > 0 for r in runs)
    text = results.read_text()
    office, digits = text.index("## Office-31"), text.index("## Digits")
    assert text.index("<!-- generated: office31 begin -->") < office < text.index("<!-- generated: office31 end -->")
    assert text.index("<!-- generated: digits begin -->") < digits < text.index("<!-- generated: digits end -->")
    assert "| amazon→webcam |" in text[office:digits] and "mnist→usps" not in text[office:digits]
    assert "| mnist→usps |" in text[digits:] and "amazon→webcam" not in text[digits:]
    assert "| dann |" in text[office:digits].split("Interleaved timing pass")[1]  # the pass ran on the first suite

    # regenerate from the finished runs: nothing is trained again; the hand-written text and, when only one suite
    # is collected, the other suite's section stay as they were
    digits_section = text[text.index("<!-- generated: digits begin -->"):text.index("<!-- generated: digits end -->")]
    results.write_text(text.replace("# Unsupervised domain adaptation\n", "# Unsupervised domain adaptation\n\n"
                                    "Measured by hand on a quiet day.\n") + "\n## Discussion\n\nDANN wins here.\n")
    stamps = {r: (out / r / "summary.json").stat().st_mtime_ns for r in runs}
    office_only = [a for a in args if a not in ("--digits", "mnist-usps")]
    uda.main([*office_only, "--collect", "--timing-steps", "0"])
    assert stamps == {r: (out / r / "summary.json").stat().st_mtime_ns for r in runs}
    again = results.read_text()
    assert again.endswith("## Discussion\n\nDANN wins here.\n") and again.count("## Discussion") == 1
    assert "Measured by hand on a quiet day." in again and digits_section in again
    assert "Interleaved timing pass" not in again and "--collect" in again  # the office31 section is the new one
    stored = json.loads(results.with_suffix(".json").read_text())
    assert sorted({r["pair"] for r in stored["runs"]}) == ["amazon-webcam", "mnist-usps"]  # digits runs kept

    # a results file without the markers is refused before anything runs, and left as it was
    results.write_text("# Hand-written\n")
    with pytest.raises(SystemExit, match="generated: office31 begin"):
        uda.main([*office_only, "--collect"])
    assert results.read_text() == "# Hand-written\n"

    conf = load("uda_confidence")
    acc, share, precision = conf.confidence_stats(out / "amazon-webcam" / "dann" / "seed-0", 0.0)
    assert share == 1.0 and precision == pytest.approx(acc)  # threshold 0: every sample counts
