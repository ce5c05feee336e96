"""benchmarks/_results.py: a benchmark script rewrites only the marked generated section of its results file."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
RESULTS = BENCH / "results"


def load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


res = load("_results")


def test_replace_keeps_everything_outside_the_markers():
    text = "# Title\n\nBy hand.\n\n<!-- generated: begin -->\n\nold table\n\n<!-- generated: end -->\n\nReading.\n"
    new = res.replace_section(text, "new table\n")
    assert new == text.replace("old table", "new table")
    assert res.replace_section(new, "old table") == text
    two = "<!-- generated: a begin -->\nA\n<!-- generated: a end -->\nmiddle\n<!-- generated: b begin -->\nB\n" \
          "<!-- generated: b end -->\n"
    assert res.replace_section(two, "A2", "b") == two.replace("\nB\n", "\n\nA2\n\n")
    for bad in ("no markers", "<!-- generated: end -->\n<!-- generated: begin -->",
                "<!-- generated: begin -->\n<!-- generated: begin -->\n<!-- generated: end -->"):
        with pytest.raises(ValueError):
            res.replace_section(bad, "x")


def test_write_refuses_a_file_without_markers_and_creates_a_new_one(tmp_path):
    hand = tmp_path / "hand.md"
    hand.write_text("# Notes written by hand\n")
    with pytest.raises(SystemExit, match="generated: begin"):
        res.write_section(hand, "table")
    with pytest.raises(SystemExit, match="generated: begin"):
        res.check_sections(hand)
    assert hand.read_text() == "# Notes written by hand\n"
    new = tmp_path / "sub" / "new.md"
    res.check_sections(new)  # nothing there yet: fine
    res.write_sections(new, {"a": "A", "b": "B"}, head="# T\n\n", tail="\nEnd.\n")
    assert new.read_text() == ("# T\n\n<!-- generated: a begin -->\n\nA\n\n<!-- generated: a end -->\n\n"
                               "<!-- generated: b begin -->\n\nB\n\n<!-- generated: b end -->\n\nEnd.\n")
    res.write_section(new, "B2", "b")
    assert "\nA\n" in new.read_text() and "\nB2\n" in new.read_text() and new.read_text().endswith("\nEnd.\n")


@pytest.mark.parametrize("name", ["train_step.md", "scale.md", "approx-ada.md", "kmeans_pp_refresh.md"])
def test_committed_results_keep_their_hand_written_text(name, tmp_path):
    """Each committed file has one generated section; rewriting it changes nothing else."""
    path = tmp_path / name
    shutil.copy(RESULTS / name, path)
    text = path.read_text()
    begin, end = res.markers()
    body = text[text.index(begin) + len(begin):text.index(end)]
    res.write_section(path, body)
    assert path.read_text() == text  # the same body gives the same file, byte for byte
    res.write_section(path, "| a new table |")
    after = path.read_text()
    assert after[:after.index(begin)] == text[:text.index(begin)]
    assert after[after.index(end):] == text[text.index(end):]
    assert "| a new table |" in after


def test_kmeans_pp_refresh_new_file_layout_is_the_committed_one(tmp_path):
    """A new results file is title + generated section + the reading paragraph, as committed."""
    kpp = load("kmeans_pp_refresh")
    text = (RESULTS / "kmeans_pp_refresh.md").read_text()
    begin, end = res.markers()
    body = text[text.index(begin) + len(begin):text.index(end)]
    out = tmp_path / "k.md"
    res.write_section(out, body, head="# k-means++ (BADGE): when to refresh the D² bounds\n\n",
                      tail="\n" + kpp.READING)
    assert out.read_text() == text
    with pytest.raises(SystemExit) as exc:  # --help prints and exits without measuring
        kpp.main(["--help"])
    assert exc.value.code == 0


def test_approx_ada_rewrites_its_section_only(tmp_path, capsys, monkeypatch):
    """approx_ada.py --md on a copy of the committed file: new table, the hand-written reading kept."""
    approx = load("approx_ada")
    for root, acc in (("exact", 0.80), ("approx", 0.81)):
        for seed in (0, 1):
            d = tmp_path / root / "amazon-webcam" / "FT_+_las" / f"seed-{seed}"
            d.mkdir(parents=True)
            (d / "summary.json").write_text(json.dumps({"final_accuracy": acc + seed / 100}))
    md = tmp_path / "approx-ada.md"
    shutil.copy(RESULTS / "approx-ada.md", md)
    before = md.read_text()
    monkeypatch.setattr(sys, "argv", ["approx_ada.py", "--exact", str(tmp_path / "exact"), "--approx",
                                      str(tmp_path / "approx"), "--md", str(md)])
    approx.main()
    after = md.read_text()
    begin, end = res.markers()
    assert after[:after.index(begin)] == before[:before.index(begin)]
    assert after[after.index(end):] == before[before.index(end):]
    assert "(greedy seeding, 8 it.) | amazon→webcam | 80.5 ± 0.5 (n=2) | 81.5 ± 0.5 (n=2) | +1.0 | no |" in after
    assert "webcam→dslr" not in after[after.index(begin):after.index(end)]  # only the fake pair's rows
