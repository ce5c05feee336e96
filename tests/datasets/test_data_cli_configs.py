"""`adakit data list` / `adakit data prepare` on the command line, and the ready configs for prepared data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from dataset_fakes import office31_members, write_tar
from typer.testing import CliRunner

from adakit.cli import app
from adakit.config import load_config
from adakit.datasets import CATALOG, DomainInfo

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
runner = CliRunner()


def test_data_list_shows_every_dataset_with_sizes():
    res = runner.invoke(app, ["data", "list"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for name in ("office31", "officehome", "visda", "domainnet", "mnist", "usps", "mnistm"):
        assert name in res.output
    assert "webcam 795" in res.output and "real 55,388" in res.output and "usps-test 2,007" in res.output
    assert "33,525?" in res.output  # an unconfirmed count is marked


def test_catalogue_has_the_published_sizes():
    assert {d.name: d.count for d in CATALOG["office31"].domains} == {"amazon": 2817, "dslr": 498, "webcam": 795}
    assert sum(d.count for d in CATALOG["officehome"].domains) == 15588
    assert len(CATALOG["officehome"].classes) == 65 and len(CATALOG["office31"].classes) == 31
    assert sum(d.count for d in CATALOG["domainnet"].domains) == 586575
    for ds in CATALOG.values():
        for f in ds.files:
            assert f.sha256 is None or len(f.sha256) == 64
            assert f.md5 is None or len(f.md5) == 32


def test_data_prepare_cli_pass_and_error(tmp_path, monkeypatch):
    arc = write_tar(tmp_path / "domain_adaptation_images.tar.gz",
                    office31_members({d: {"bike": 1} for d in ("amazon", "dslr", "webcam")}))
    monkeypatch.setenv("ADAKIT_DATA", str(tmp_path / "data"))
    res = runner.invoke(app, ["data", "prepare", "office31", "--from", str(arc), "--quiet"])
    assert res.exit_code == 2
    assert "Office-31 amazon: 1 images, expected 2,817" in res.output and "Traceback" not in res.output
    # a subset: one domain, its count checked against the catalogue -> still a clear error
    res = runner.invoke(app, ["data", "prepare", "office31", "--from", str(arc), "--domain", "webcam", "--quiet"])
    assert res.exit_code == 2 and "webcam: 1 images, expected 795" in res.output
    assert not (tmp_path / "data" / "office31" / "images").exists()


def test_data_prepare_cli_default_out_and_success(tmp_path, monkeypatch):
    arc = write_tar(tmp_path / "domain_adaptation_images.tar.gz",
                    office31_members({d: {"bike": 1} for d in ("amazon", "dslr", "webcam")}))
    monkeypatch.setenv("ADAKIT_DATA", str(tmp_path / "data"))
    small = tuple(DomainInfo(d, 1) for d in ("amazon", "dslr", "webcam"))
    monkeypatch.setitem(CATALOG, "office31", dataclasses.replace(CATALOG["office31"], domains=small))
    res = runner.invoke(app, ["data", "prepare", "office31", "--from", str(arc), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "prepared office31" in res.output and "no published checksum, computed sha256 =" in res.output
    assert (tmp_path / "data" / "office31" / "images" / "dslr" / "images" / "bike").is_dir()


@pytest.mark.parametrize("name,fmt,source,target", [
    ("officehome-images", "image_folder", "Art", "Clipart"),
    ("visda-images", "image_list", "synthetic", "real"),
    ("domainnet-images", "image_list", "real_train", "clipart_train"),
])
def test_ready_configs_validate_and_match_the_prepared_layout(name, fmt, source, target):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.data.format == fmt and cfg.data.source == source and cfg.data.target == target
    ds = CATALOG[name.split("-")[0]]
    domains = {d.name for d in ds.domains}
    assert {source, target} <= domains
    # the config's pattern points at what `adakit data prepare` writes under $ADAKIT_DATA/<dataset>
    assert cfg.data.path_of(target, "R") == f"R/{ds.default_subdir}/" + ds.layout.format(domain=target)
    assert cfg.model.backbone == "resnet50"
