"""The download path of `adakit data prepare` against a local HTTP server on 127.0.0.1 (Range support)."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dataset_fakes import idx_files, image_bytes, write_tar

from adakit.datasets import download, prepare
from adakit.errors import DataError


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut_after: dict[str, int] = {}  # name -> bytes sent before the first response is cut off
    ignore_range = False  # answer every request with the whole file (200), as some servers do
    ranges: list[str | None] = []

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        name = self.path.rsplit("/", 1)[-1]
        data = self.files.get(name)
        rng = self.headers.get("Range")
        self.ranges.append(rng)
        if data is None:
            self.send_error(404)
            return
        if self.ignore_range:
            rng = None
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if start >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.end_headers()
            return
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        cut = self.cut_after.pop(name, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    handler = type("H", (_Handler,), {"files": {}, "cut_after": {}, "ranges": [], "ignore_range": False})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}/files"
    httpd.shutdown()
    httpd.server_close()


def test_interrupted_download_resumes_from_part(server, tmp_path):
    handler, base = server
    payload = bytes(range(256)) * 400  # 100 kB
    handler.files["blob.tar.gz"] = payload
    handler.cut_after["blob.tar.gz"] = 30_000
    dest = tmp_path / "blob.tar.gz"
    sha = hashlib.sha256(payload).hexdigest()
    with pytest.raises(DataError, match="interrupted at 30000 of 102400 bytes.*resume"):
        download(f"{base}/blob.tar.gz", dest, sha256=sha, progress=False)
    part = tmp_path / "blob.tar.gz.part"
    assert part.stat().st_size == 30_000 and not dest.exists()
    note = download(f"{base}/blob.tar.gz", dest, sha256=sha, progress=False)
    assert handler.ranges == [None, "bytes=30000-"]  # the second request asked only for the rest
    assert dest.read_bytes() == payload and not part.exists()
    assert "sha256 ok" in note


def test_server_without_range_support_restarts_and_complete_part_is_kept(server, tmp_path):
    handler, base = server
    payload = b"abc" * 5000
    handler.files["f.zip"] = payload
    handler.ignore_range = True
    (tmp_path / "f.zip.part").write_bytes(b"garbage!")  # a stale .part the server cannot continue
    download(f"{base}/f.zip", tmp_path / "f.zip", progress=False)
    assert handler.ranges == ["bytes=8-"] and (tmp_path / "f.zip").read_bytes() == payload  # 200 -> rewritten
    handler.ignore_range = False
    (tmp_path / "g.zip.part").write_bytes(payload)  # complete but never renamed: the server answers 416
    handler.files["g.zip"] = payload
    note = download(f"{base}/g.zip", tmp_path / "g.zip", sha256=hashlib.sha256(payload).hexdigest(), progress=False)
    assert handler.ranges[-1] == f"bytes={len(payload)}-" and "sha256 ok" in note
    assert (tmp_path / "g.zip").read_bytes() == payload


def test_checksum_mismatch_deletes_the_file_and_prepares_nothing(server, tmp_path):
    handler, base = server
    for f in idx_files(tmp_path / "src", "t10k", 5):  # not the real MNIST: md5 differs from the published one
        handler.files[f.name] = f.read_bytes()
    out = tmp_path / "digits"
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: checksum mismatch.*nothing was prepared"):
        prepare("mnist", out, domains=["mnist"], base_url=base, expected={"mnist": 5}, progress=False)
    assert not (out / "t10k-images-idx3-ubyte.gz").exists()
    assert not list((out / ".downloads").glob("t10k-images*"))  # neither the file nor its .part is kept


def test_download_then_prepare_without_published_checksum(server, tmp_path):
    handler, base = server
    train = {f"train/{c}/{i}.png": image_bytes("PNG", value=i) for c in ("car", "bus") for i in range(2)}
    val = {f"validation/car/{i}.jpg": image_bytes(value=i) for i in range(3)}
    for name, members in (("train.tar", train), ("validation.tar", val)):
        handler.files[name] = write_tar(tmp_path / name, members, "w").read_bytes()
    handler.cut_after["validation.tar"] = 1000
    out = tmp_path / "visda"
    kw = dict(base_url=base, expected={"synthetic": 4, "real": 3}, progress=False)
    with pytest.raises(DataError, match="interrupted"):
        prepare("visda", out, **kw)
    assert not (out / "synthetic.txt").exists()
    res = prepare("visda", out, **kw)  # resumes validation.tar.part; train.tar is already complete
    assert res.counts == {"synthetic": 4, "real": 3}
    assert sum("no published checksum, computed sha256 = " in n for n in res.notes) == 2
    assert (out / "real.txt").read_text().count("\n") == 3


def test_manual_dataset_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match="no direct public download.*OfficeHomeDataset_10072016.zip.*--from"):
        prepare("officehome", tmp_path / "oh", progress=False)
