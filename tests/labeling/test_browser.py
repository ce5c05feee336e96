"""End to end in headless Chromium (Debian's chromium + chromedriver, driven by Selenium; no browser
download): label real Office-31 images with the keyboard, undo (a correction record), a conflict from a
second client, then train on the answers. Takes a screenshot of the page; with ADAKIT_UPDATE_SCREENSHOT=1 it
is written to docs/labeling.png (the README's), otherwise into the test's temporary folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from adakit.labeling.run import LabelingRun
from adakit.labeling.server import make_server, serve_in_thread
from adakit.ledger import Ledger

from .test_server import Client

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists()
                                                else None)
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "labeling.png"


def _skip(reason: str):
    print(f"SKIP browser test: {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _skip("selenium is not installed (pip install -e '.[test]')")
    if CHROMIUM is None or CHROMEDRIVER is None:
        _skip("chromium/chromedriver not found (apt-get install -y chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="adakit-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,800", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    try:  # an explicit driver path: Selenium Manager never runs, nothing is downloaded
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    except Exception as e:  # noqa: BLE001
        shutil.rmtree(profile, ignore_errors=True)
        _skip(f"chromium did not start: {str(e).splitlines()[0]}")
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, cond, what: str, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: cond(d), message=what)


def _text(driver, el_id: str) -> str:
    return driver.find_element("id", el_id).text


def _key(driver, k: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(k).perform()


def test_label_office31_images_in_chromium(browser, office_run, tmp_path):
    run = LabelingRun(office_run)
    server = make_server(run, port=0)
    serve_in_thread(server)
    other = Client(server.url)
    try:
        st = other.state()
        items = st["items"]
        classes = st["classes"]
        assert st["total"] == 4 and all(i["image"] for i in items)
        d = browser
        d.get(server.url)
        _wait(d, lambda d: "0 of 4 answered" in _text(d, "progress"), "page loaded")
        _wait(d, lambda d: d.execute_script("const i = document.getElementById('img');"
                                            "return i.complete && i.naturalWidth > 0"), "image shown")
        assert "item 1/4" in _text(d, "progress")
        first = items[0]
        top1 = first["suggestions"][0]["label"]
        sugg = d.find_element("id", "sugg").text
        assert classes[top1] in sugg and len(d.find_elements("css selector", "#sugg .cls")) == 3

        # 1 = the model's top suggestion
        _key(d, "1")
        _wait(d, lambda d: "1 of 4 answered" in _text(d, "progress"), "first answer acknowledged")
        with Ledger(office_run / "ledger.sqlite") as led:
            assert led.current_labels() == {first["sample_id"]: top1}

        # screenshot for the README: an image, suggestions, progress, the saved answer's status
        _wait(d, lambda d: d.execute_script("const i = document.getElementById('img');"
                                            "return i.complete && i.naturalWidth > 0"), "second image shown")
        shot = README_SCREENSHOT if os.environ.get("ADAKIT_UPDATE_SCREENSHOT") else tmp_path / "labeling.png"
        assert d.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

        # 4 = the first class that is not among the top-3 suggestions, on item 2
        second = items[1]
        keys = [s["label"] for s in second["suggestions"]]
        keys += [c for c in range(len(classes)) if c not in keys]
        _key(d, "4")
        _wait(d, lambda d: "2 of 4 answered" in _text(d, "progress"), "second answer acknowledged")
        # u = undo: back to item 2, the next pick is a correction
        _key(d, "u")
        _wait(d, lambda d: "Undo" in _text(d, "status"), "undo shown")
        assert "item 2/4" in _text(d, "progress")
        _key(d, "2")
        _wait(d, lambda d: "Corrected" in _text(d, "status"), "correction acknowledged")
        assert "2 of 4 answered" in _text(d, "progress")
        with Ledger(office_run / "ledger.sqlite") as led:
            rows = led.label_rows(second["sample_id"])
        assert [r["label"] for r in rows] == [keys[3], keys[1]] and rows[1]["correction_of"] == rows[0]["id"]

        # undo finds the sample it answered, not the position: a refresh that reorders or replaces the list (a new
        # round) made undo open another sample, whose pick was then sent as a correction of nothing
        assert d.execute_script("hist.push(arguments[0]); S.items = S.items.slice().reverse(); undo();"
                                "const s = S.items[idx].sample_id; S.items.reverse(); idx = S.items.findIndex("
                                "(i) => i.sample_id === s); render(); return s", second["sample_id"]) \
            == second["sample_id"]
        assert d.execute_script("hist = ['gone/1.jpg']; undo(); return document.getElementById('status')"
                                ".textContent").startswith("Nothing to undo")
        # an undo's status names its item: moving away clears it (it stayed, naming the item left behind)
        d.execute_script("hist.push(arguments[0]); undo()", second["sample_id"])
        assert _text(d, "status").startswith("Undo: pick the right class for " + second["sample_id"])
        d.execute_script("go(1)")
        assert "Undo" not in _text(d, "status")
        d.execute_script("go(-1)")
        _key(d, "\ue014")  # → (back to item 3)

        # arrows navigate
        assert "item 3/4" in _text(d, "progress")
        _key(d, "\ue014")  # →
        _wait(d, lambda d: "item 4/4" in _text(d, "progress"), "arrow right")
        _key(d, "\ue012")  # ←
        _wait(d, lambda d: "item 3/4" in _text(d, "progress"), "arrow left")

        # a second client answers item 3 first: the page's different answer gets 409 and shows it
        third = items[2]
        theirs = third["suggestions"][1]["label"]
        assert other.answer(third["sample_id"], theirs)[0] == 200
        _key(d, "1")
        _wait(d, lambda d: "Conflict" in _text(d, "status"), "conflict shown")
        assert classes[theirs] in _text(d, "status")
        with Ledger(office_run / "ledger.sqlite") as led:
            assert led.current_labels()[third["sample_id"]] == theirs

        # the last item, then everything is answered
        _key(d, "\ue014")
        _wait(d, lambda d: "item 4/4" in _text(d, "progress"), "to the last item")
        _key(d, "x")  # nobody can tell this one: dropped, which answers it too
        _wait(d, lambda d: "All 4 answered" in _text(d, "status"), "all answered")
        assert "4 of 4 answered (1 dropped)" in _text(d, "progress") and "can't label" in _text(d, "status")
        assert "dropped: nobody can label it" in _text(d, "meta")
        logs = [e for e in d.get_log("browser") if e.get("level") == "SEVERE" and "(Conflict)" not in e["message"]]
        assert not logs, logs
    finally:
        server.shutdown()
        server.server_close()
        run.close()
    with Ledger(office_run / "ledger.sqlite") as led:
        assert len(led.current_labels()) == 4 and len(led.label_rows()) == 5 and led.check() == []
        assert led.current_labels()[items[3]["sample_id"]] == -1 and len(led.dropped_pool()) == 1
    # resume trains on the people's answers (the dropped sample left out) and finishes the run
    from adakit.loop import ActiveLoop

    summary = ActiveLoop.resume(office_run, show_progress=False).run()
    assert summary["rounds"][-1]["labels"] == 3 and summary["rounds"][-1]["round"] == 1


@pytest.fixture
def demo_page(browser, demo_run):
    run = LabelingRun(demo_run)
    server = make_server(run, port=0)
    serve_in_thread(server)
    try:
        browser.get(server.url)
        _wait(browser, lambda d: "of 20 answered" in _text(d, "progress"), "page loaded")
        yield browser, Client(server.url), demo_run
    finally:
        server.shutdown()
        server.server_close()
        run.close()


def test_number_keys_pick_again_after_a_pick_from_the_class_filter(demo_page):
    # "/" filter, Enter picks: the filter kept the focus, so the next "1" was typed into it, nothing was saved and
    # the page still said "Saved ... Next." from the previous answer
    from selenium.webdriver.common.keys import Keys

    d, _, run_dir = demo_page
    first = d.execute_script("return S.items[idx].sample_id")
    _key(d, "/")
    _key(d, "7")
    _key(d, Keys.ENTER)
    _wait(d, lambda d: "1 of 20 answered" in _text(d, "progress"), "filter pick saved")
    second = d.execute_script("return S.items[idx].sample_id")
    top = d.execute_script("return shortcuts(S.items[idx])[0]")
    _key(d, "1")
    _wait(d, lambda d: "2 of 20 answered" in _text(d, "progress"), "number key after a filter pick")
    assert d.find_element("id", "filter").get_attribute("value") == ""
    with Ledger(run_dir / "ledger.sqlite") as led:
        assert led.current_labels() == {first: 7, second: top}


def test_a_round_finished_in_two_tabs_says_so_and_what_to_do_next(demo_page):
    # the page decided "all answered" from its own copy of the queries: the tab giving the round's last answer,
    # whose other items another tab had answered, said "Next." and moved to an answered item; a page opened on a
    # finished round said "Pick a class"
    d, other, run_dir = demo_page
    items = other.state()["items"]
    for it in items[1:]:
        assert other.answer(it["sample_id"], 3)[0] == 200
    _key(d, "1")  # the page still thinks 19 queries are open
    _wait(d, lambda d: "20 of 20 answered" in _text(d, "progress"), "last answer saved")
    assert "All 20 answered" in _text(d, "status") and "adakit resume" in _text(d, "status")
    d.refresh()
    _wait(d, lambda d: "20 of 20 answered" in _text(d, "progress"), "finished page reloaded")
    _wait(d, lambda d: "All 20 answered" in _text(d, "status"), "finished round said on load")
    assert f"adakit resume {run_dir.resolve()}" in _text(d, "status")  # the run's own folder, not RUN_DIR
    with Ledger(run_dir / "ledger.sqlite") as led:
        assert len(led.current_labels()) == 20


def test_a_tab_that_believes_the_round_done_moves_to_the_queries_still_open(demo_page):
    d, _, run_dir = demo_page
    # this tab's copy says every other query is answered (it is not): the answer is saved, the round is not done
    d.execute_script("S.items.slice(1).forEach((i) => { i.label = 4; }); render()")
    _key(d, "1")
    _wait(d, lambda d: "1 of 20 answered" in _text(d, "progress"), "answer saved, queries reloaded")
    assert "Next." in _text(d, "status") and "All 20" not in _text(d, "status")
    assert "item 2/20" in _text(d, "progress") and "not labelled yet" in _text(d, "meta")


def test_a_conflict_updates_the_count_and_the_answers_of_other_tabs(demo_page):
    # the 409 answer changed only the conflicting item: the page kept "0 of 20 answered" with 2 in the ledger, and
    # showed the other tab's next answer as open (a second conflict waiting)
    d, other, run_dir = demo_page
    items = other.state()["items"]
    for it in items[:2]:
        assert other.answer(it["sample_id"], 3)[0] == 200
    d.execute_script("pick(4)")
    _wait(d, lambda d: "Conflict" in _text(d, "status"), "conflict shown")
    _wait(d, lambda d: "2 of 20 answered" in _text(d, "progress"), "count of the ledger shown")
    assert "Conflict" in _text(d, "status") and "item 1/20" in _text(d, "progress")
    assert d.execute_script("return S.items[1].label") == 3
    with Ledger(run_dir / "ledger.sqlite") as led:
        assert led.current_labels() == {items[0]["sample_id"]: 3, items[1]["sample_id"]: 3}


def test_the_page_says_when_the_server_answers_again(demo_page):
    # the page's "server unreachable" stayed after the server was back (its next reload of the queries succeeded)
    d, _, run_dir = demo_page
    d.execute_script("window._fetch = window.fetch; window.fetch = () => Promise.reject(new TypeError('Failed to "
                     "fetch')); window.dispatchEvent(new Event('focus'))")
    _wait(d, lambda d: "server unreachable" in _text(d, "status"), "server down shown")
    _key(d, "1")
    _wait(d, lambda d: "Not saved" in _text(d, "status"), "answer not saved shown")
    d.execute_script("window.fetch = window._fetch; window.dispatchEvent(new Event('focus'))")
    _wait(d, lambda d: "unreachable" not in _text(d, "status"), "server back shown")
    assert "0 of 20 answered" in _text(d, "progress")
    with Ledger(run_dir / "ledger.sqlite") as led:
        assert led.current_labels() == {}


def test_space_after_a_clicked_button_does_not_press_it_again(demo_page):
    """After a click on "can't label", the button kept the focus: Space (or Enter) pressed it again and dropped the
    next item too."""
    from selenium.webdriver.common.keys import Keys

    d, _, run_dir = demo_page
    first = d.execute_script("return S.items[idx].sample_id")
    d.find_element("id", "drop").click()
    _wait(d, lambda d: "1 of 20 answered" in _text(d, "progress"), "drop saved")
    _key(d, Keys.SPACE)
    _key(d, Keys.ENTER)
    d.find_element("css selector", "#classes .cls").click()  # a class button: focus handed back as well
    _wait(d, lambda d: "2 of 20 answered" in _text(d, "progress"), "class click saved")
    _key(d, Keys.SPACE)
    _key(d, Keys.ENTER)
    d.execute_script("return 1")  # (a round trip: any key handling has run)
    assert "2 of 20 answered" in _text(d, "progress")
    with Ledger(run_dir / "ledger.sqlite") as led:
        labels = led.current_labels()
    assert len(labels) == 2 and labels[first] == -1
