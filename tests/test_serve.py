"""simqa serve: real uvicorn processes on loopback ports over a real index, called as a
client would (httpx), and the page driven in a real headless Chromium (selenium)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import simqa
from tests.helpers import SEED_ID, Server, chromium, small_index

#: builds its own indexes, starts servers or trains: `pytest -m "not slow"` skips it
pytestmark = pytest.mark.slow

TOKEN = "test-write-token-0123456789"
SEED_TITLE = "Experiencing involuntary leg movements during sleep?"
LEGS = "my legs jerk when I am falling asleep"
HIV = "is-my-anti-hiv-test-conclusive-or-need-retest"
#: what a newly written consultation asks: nothing in the corpus is close to it
NEW_QUESTION = (
    "My ferret swallowed a small button battery from a hearing aid an hour ago; "
    "should I make him vomit or go straight to an emergency vet?"
)


@pytest.fixture(scope="module")
def index_path(tmp_path_factory) -> Path:
    """The seed page and 200 QuestionDoctors consultations, on disk."""
    return small_index(tmp_path_factory.mktemp("serve") / "consults")


@pytest.fixture(scope="module")
def api(index_path, tmp_path_factory) -> Iterator[Server]:
    """Two workers, writes allowed."""
    server = Server(
        index_path, tmp_path_factory.mktemp("logs") / "api.log", "--workers", "2", token=TOKEN
    )
    yield server
    server.stop()
    assert server.process.returncode is not None


@pytest.fixture(scope="module")
def peer(index_path, tmp_path_factory, api) -> Iterator[Server]:
    """A second server process on the same index, read-only (no write token)."""
    server = Server(index_path, tmp_path_factory.mktemp("logs") / "peer.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def library(index_path):
    """The same index opened in the test process: what the engine itself answers."""
    index = simqa.open_index(index_path)
    yield index
    index.close()


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["hits"]]


# --- read endpoints ------------------------------------------------------------------------


def test_health_and_info(api, index_path):
    held = len(simqa.open_index(index_path))  # whatever earlier tests left: no order assumed
    assert api.get("/healthz").json() == {"status": "ok", "records": held}
    info = api.get("/v1/info").json()
    assert info["records"] == held
    assert info["model"] == "all-MiniLM-L6-v2"
    assert info["writes"] is True
    assert "path" not in info and str(index_path) not in api.get("/v1/info").text


def test_search_answers_what_the_library_answers(api, library):
    response = api.get("/v1/search", params={"q": LEGS, "k": 3})
    body = response.json()
    assert body["query"] == LEGS
    expected = simqa.Box.for_question(library, LEGS, 3).to_json()["hits"]  # --format json
    assert [set(hit) for hit in body["hits"]] == [set(hit) for hit in expected]
    assert _ids(response) == [hit["id"] for hit in expected]
    assert _ids(response)[0] == SEED_ID
    assert body["hits"][0]["doctor"] == "Ding Xianwei"


def test_post_search_one_query_and_a_batch(api):
    other = "Is my HIV test conclusive or do I need a retest?"
    one = api.post("/v1/search", json={"q": LEGS, "k": 3})
    assert _ids(one) == _ids(api.get("/v1/search", params={"q": LEGS, "k": 3}))
    batch = api.post("/v1/search", json={"queries": [LEGS, other], "k": 2})
    assert batch.status_code == 200
    results = batch.json()["results"]
    assert [r["query"] for r in results] == [LEGS, other]
    assert [h["id"] for h in results[1]["hits"]] == _ids(
        api.get("/v1/search", params={"q": other, "k": 2})
    )
    assert results[1]["hits"][0]["id"] == f"questiondoctors-{HIV}"


def test_similar_is_the_library_box_without_itself(api, library):
    ids = _ids(api.get(f"/v1/similar/{SEED_ID}", params={"k": 4}))
    assert ids == [h.id for h in library.similar(SEED_ID, 4)]
    assert len(ids) == 4 and SEED_ID not in ids


def test_filters(api):
    by_department = api.get(
        "/v1/search", params={"q": "headache", "department": "Neurosurgery", "min_score": -1}
    )
    assert _ids(by_department) == [SEED_ID]
    assert _ids(api.get("/v1/search", params={"q": LEGS, "source": "page"})) == [SEED_ID]
    others = api.get("/v1/search", params={"q": LEGS, "source": "questiondoctors"})
    assert SEED_ID not in _ids(others)
    assert _ids(api.get("/v1/search", params={"q": "tremor", "tag": "Sleep", "min_score": -1})) == [
        SEED_ID
    ]
    dated = {"q": LEGS, "since": "2013-01-01", "until": "2013-12-31", "min_score": -1}
    assert _ids(api.get("/v1/search", params=dated)) == [SEED_ID]
    strict = api.get("/v1/search", params={"q": LEGS, "k": 10, "min_score": 0.6}).json()["hits"]
    assert strict and all(hit["score"] >= 0.6 for hit in strict)
    assert api.get("/v1/search", params={"q": LEGS, "min_score": 0.9999}).json()["hits"] == []


def test_html_fragment_of_the_box(api):
    response = api.get(f"/v1/similar/{SEED_ID}", params={"k": 2, "format": "html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith('<section class="similar-qa">')
    assert response.text.count("<article") == 2
    searched = api.get("/v1/search", params={"q": LEGS, "k": 1, "format": "html"}).text
    assert f'data-id="{SEED_ID}"' in searched and "Dr. Ding Xianwei reply Neurosurgery" in searched
    nothing = api.get("/v1/search", params={"q": LEGS, "min_score": 0.9999, "format": "html"})
    assert "Nothing similar was found" in nothing.text


def test_consultation_by_id(api):
    record = api.get(f"/v1/consultations/{SEED_ID}").json()
    assert record["title"] == SEED_TITLE
    assert record["doctor"] == "Ding Xianwei" and record["department"] == "Neurosurgery"
    assert any(tag.startswith("Sleep") for tag in record["tags"]) and record["ask_date"]


def test_openapi_docs(api):
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/v1/similar/{record_id}", "/v1/search", "/v1/consultations", "/v1/info"):
        assert path in paths


# --- bad requests --------------------------------------------------------------------------

BIG = b'{"q": "' + b"x" * (9 * 1024 * 1024) + b'"}'
JSON = {"content-type": "application/json"}
ONE = [{"id": "x", "question": "q"}]
WRITER = _auth()
BAD = [
    ("post", "/v1/search", {"content": b'{"q": "legs", ', "headers": JSON}, 400, "malformed JSON"),
    ("post", "/v1/consultations", {"content": b"[{", "headers": WRITER}, 400, "malformed JSON"),
    ("post", "/v1/search", {"content": BIG, "headers": JSON}, 413, "too large"),
    ("post", "/v1/search", {"content": iter([BIG]), "headers": JSON}, 413, "too large"),
    ("get", "/v1/search?q=legs&k=0", {}, 422, "k:"),
    ("get", "/v1/search?q=legs&k=101", {}, 422, "k:"),
    ("get", "/v1/search?q=legs&k=many", {}, 422, "k:"),
    ("get", "/v1/search?q=legs&min_score=2", {}, 422, "min_score"),
    ("post", "/v1/search", {"json": {"q": "legs", "k": 0}}, 422, "k:"),
    ("get", "/v1/search?q=legs&since=last+week", {}, 400, "since"),
    ("get", "/v1/search?q=", {}, 400, "query is empty"),
    ("get", "/v1/search?q=%20%0A", {}, 400, "query is empty"),
    ("get", "/v1/search", {}, 422, "q:"),
    ("get", "/v1/search?q=" + "a" * 20_001, {}, 422, "q:"),
    ("post", "/v1/search", {"json": {"queries": []}}, 422, "queries"),
    ("post", "/v1/search", {"json": {"queries": ["a"] * 257}}, 422, "queries"),
    ("post", "/v1/search", {"json": {"q": "a", "queries": ["b"]}}, 422, "either q"),
    ("post", "/v1/search", {"json": {"queries": ["legs", ""]}}, 400, "query is empty"),
    ("post", "/v1/search?format=html", {"json": {"queries": ["legs"]}}, 400, "one query"),
    ("get", "/v1/similar/no-such-id", {}, 404, "no-such-id"),
    ("get", "/v1/consultations/no-such-id", {}, 404, "no-such-id"),
    ("get", "/v1/nothing-here", {}, 404, "/v1/nothing-here"),
    ("put", "/v1/search", {}, 405, ""),
    ("post", "/v1/consultations", {"json": ONE}, 401, "Bearer"),
    ("post", "/v1/consultations", {"json": ONE, "headers": {"Authorization": TOKEN}}, 401, "Bear"),
    ("post", "/v1/consultations", {"json": ONE, "headers": _auth(TOKEN[:-1])}, 403, "wrong write"),
    ("delete", f"/v1/consultations/{SEED_ID}", {}, 401, "Bearer"),
    ("delete", f"/v1/consultations/{SEED_ID}", {"headers": _auth(TOKEN + "x")}, 403, "wrong write"),
    ("delete", "/v1/consultations/no-such-id", {"headers": WRITER}, 404, "no-such-id"),
    ("post", "/v1/consultations", {"json": {"id": "x"}, "headers": WRITER}, 400, "JSON list"),
    ("post", "/v1/consultations", {"json": [], "headers": WRITER}, 400, "JSON list"),
    ("post", "/v1/consultations", {"json": [{"question": "q"}], "headers": WRITER}, 400, "no id"),
    ("post", "/v1/consultations", {"json": [{"id": "x"}], "headers": WRITER}, 400, "record 0"),
    ("post", "/v1/consultations", {"json": ["text"], "headers": WRITER}, 400, "record 0"),
    ("post", "/v1/consultations", {"json": ONE * 2, "headers": WRITER}, 400, "twice"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "phrase"), BAD)
def test_bad_request_gets_a_one_line_json_error(api, method, path, kwargs, status, phrase):
    response = getattr(httpx, method)(api.url + path, timeout=60, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    assert phrase in body["error"]
    assert "\n" not in body["error"] and "Traceback" not in response.text
    assert api.get("/healthz").status_code == 200  # and the server goes on


def test_writes_are_off_without_a_token(peer):
    response = peer.post("/v1/consultations", json=[{"id": "x", "question": "q"}], headers=_auth())
    assert response.status_code == 403
    assert "writes are disabled" in response.json()["error"]
    assert peer.get("/v1/info").json()["writes"] is False


def test_a_refused_token_at_startup(index_path, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "simqa", "serve", "--index", str(index_path), "--port", "1"],
        env={**os.environ, "SIMQA_WRITE_TOKEN": "short"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("simqa: error: the write token must be at least"), result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "simqa", "serve", "--index", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1, missing.stderr
    assert missing.stderr.startswith("simqa: error: no index at"), missing.stderr


# --- writes, seen by every worker and every process ---------------------------------------


def test_a_write_is_seen_by_every_worker_and_process(api, peer):
    start = api.get("/healthz").json()["records"]
    new = {
        "id": "new-ferret-battery",
        "title": "Ferret swallowed a button battery",
        "question": NEW_QUESTION,
        "reply": "Do not induce vomiting; go to an emergency vet now.",
        "doctor": "Ada Vet",
        "department": "Veterinary",
        "tags": ["Poisoning"],
    }
    added = api.post("/v1/consultations", json=[new], headers=_auth())
    assert added.status_code == 200, added.text
    assert peer.get("/v1/consultations/new-ferret-battery").json()["title"] == new["title"]
    for server in [peer, api] * 6:  # new connections: both of api's workers answer some
        assert _ids(server.get("/v1/search", params={"q": NEW_QUESTION, "k": 1})) == [new["id"]]
    assert api.get("/healthz").json()["records"] == 202

    # an update of the same id replaces it everywhere
    changed = {**new, "title": "Ferret ate a hearing-aid battery"}
    assert api.post("/v1/consultations", json=[changed], headers=_auth()).status_code == 200
    hits = peer.get("/v1/search", params={"q": NEW_QUESTION, "k": 1}).json()["hits"]
    assert hits[0]["title"] == changed["title"]
    assert peer.get("/healthz").json()["records"] == 202

    # a delete takes it down everywhere at once
    assert api.delete("/v1/consultations/new-ferret-battery", headers=_auth()).json() == {
        "deleted": 1
    }
    for server in [peer, api] * 6:
        assert server.get("/v1/consultations/new-ferret-battery").status_code == 404
        assert "new-ferret-battery" not in _ids(
            server.get("/v1/search", params={"q": NEW_QUESTION, "k": 5, "min_score": -1})
        )
    assert peer.get("/healthz").json()["records"] == start


def test_reads_go_on_during_writes(api, peer):
    """Writes and reads at once from several threads: every read answers 200."""
    start = api.get("/healthz").json()["records"]
    from concurrent.futures import ThreadPoolExecutor

    records = [
        {"id": f"batch-{n}", "question": f"Question number {n} about my elbow rash?"}
        for n in range(20)
    ]

    def write(n: int) -> int:
        batch = records[n * 5 : n * 5 + 5]
        return api.post("/v1/consultations", json=batch, headers=_auth()).status_code

    def read(n: int) -> int:
        server = (api, peer)[n % 2]
        return server.get(f"/v1/similar/{SEED_ID}", params={"k": 3}).status_code

    with ThreadPoolExecutor(8) as pool:
        writes = [pool.submit(write, n) for n in range(4)]
        reads = [pool.submit(read, n) for n in range(60)]
        assert [f.result() for f in reads] == [200] * 60
        assert [f.result() for f in writes] == [200] * 4
    for record in records:
        assert peer.get(f"/v1/consultations/{record['id']}").status_code == 200
    for n in range(20):
        assert api.delete(f"/v1/consultations/batch-{n}", headers=_auth()).status_code == 200
    assert api.get("/healthz").json()["records"] == start


def _writer_processes(server: Server) -> list[int]:
    """The server's writing processes (spawned children in its session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            same = os.getsid(int(entry.name)) == server.process.pid
            command = (entry / "cmdline").read_bytes()
        except (OSError, ProcessLookupError):
            continue
        if same and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def test_a_killed_writer_loses_nothing_and_the_next_write_lands(api):
    start = api.get("/healthz").json()["records"]
    first = {"id": "before-kill", "question": "Why does my knee click when I climb stairs?"}
    assert api.post("/v1/consultations", json=[first], headers=_auth()).status_code == 200
    writers = _writer_processes(api)
    assert writers, "writes did not run in a process of their own"
    for pid in writers:
        os.kill(pid, signal.SIGKILL)
    after = {"id": "after-kill", "question": "Why does my wrist ache after typing all day?"}
    answers = [api.post("/v1/consultations", json=[after], headers=_auth()) for _ in range(6)]
    for answer in answers:  # a worker whose writer died says so once, then starts a new one
        assert answer.status_code in (200, 503), answer.text
        if answer.status_code == 503:
            assert "send it again" in answer.json()["error"]
    assert any(a.status_code == 200 for a in answers)
    for record_id in ("before-kill", "after-kill"):
        assert api.get(f"/v1/consultations/{record_id}").status_code == 200
        assert api.delete(f"/v1/consultations/{record_id}", headers=_auth()).status_code == 200
    assert api.get("/healthz").json()["records"] == start


# --- pages ---------------------------------------------------------------------------------


def test_pages_over_http(api):
    home = api.get("/")
    assert home.status_code == 200 and '<form action="/" method="get">' in home.text
    assert 'name="viewport"' in home.text
    answer = api.get("/", params={"q": LEGS}).text
    assert f'href="/c/{SEED_ID}"' in answer and SEED_TITLE in answer
    assert "Dr. Ding Xianwei reply Neurosurgery" in answer and "[Read More]" in answer
    page = api.get(f"/c/{SEED_ID}")
    assert page.status_code == 200
    assert SEED_TITLE in page.text and "Reply Date: 2013/02/10" in page.text
    assert "30~39 year old female. Ask Date: 2013/02/10" in page.text
    assert page.text.count("<article") == 5  # the consultation and its box of 4
    missing = api.get("/c/no-such-id")
    assert missing.status_code == 404 and "no-such-id" in missing.text
    assert api.get("/", params={"q": " "}).status_code == 200  # a blank box asks again


def test_pages_escape_record_text(api):
    hostile: dict[str, str] = {
        "id": "xss-probe",
        "title": "<script>alert('t')</script> rash",
        "question": "Itchy <img src=x onerror=alert(1)> rash on my elbow for weeks?",
        "url": "javascript:alert(1)",
        "doctor": "<b>Evil</b>",
    }
    assert api.post("/v1/consultations", json=[hostile], headers=_auth()).status_code == 200
    try:
        pages = [api.get("/c/xss-probe").text, api.get("/", params={"q": hostile["question"]}).text]
        for page in pages:
            assert "<script>alert" not in page and "<img src=x" not in page
            assert "<b>Evil" not in page
            assert "&lt;script&gt;" in page
            assert 'href="javascript:' not in page
    finally:
        api.delete("/v1/consultations/xss-probe", headers=_auth())


# --- a real browser ------------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[object]:
    driver = chromium()
    yield driver
    driver.quit()


def test_a_person_asks_in_a_browser(api, browser):
    """Type a question, see the consultation in the box, follow its link, read its page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.wait import WebDriverWait

    shots = os.environ.get("SIMQA_SCREENSHOTS")  # set to a folder to keep the screenshots
    wait = WebDriverWait(browser, 60)  # a click returns before the next page has loaded
    browser.get(api.url + "/")
    box = browser.find_element(By.NAME, "q")
    box.send_keys("My legs keep jerking when I am about to fall asleep")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    first = wait.until(
        seen.presence_of_element_located((By.CSS_SELECTOR, "section.similar-qa article"))
    )
    assert first.get_attribute("data-id") == SEED_ID
    assert SEED_TITLE in first.text and "Dr. Ding Xianwei reply Neurosurgery" in first.text
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    ), "the page scrolls sideways on a phone-sized screen"
    if shots:
        browser.save_screenshot(str(Path(shots) / "serve-search.png"))
    first.find_element(By.CSS_SELECTOR, "h3 a").click()
    wait.until(seen.url_to_be(f"{api.url}/c/{SEED_ID}"))
    wait.until(seen.presence_of_element_located((By.TAG_NAME, "h1")))
    assert browser.find_element(By.TAG_NAME, "h1").text == SEED_TITLE
    assert "Dr. Ding Xianwei reply Neurosurgery" in browser.find_element(By.TAG_NAME, "main").text
    similar = browser.find_elements(By.CSS_SELECTOR, "section.similar-qa article")
    assert len(similar) == 4 and SEED_ID not in [a.get_attribute("data-id") for a in similar]
    if shots:
        browser.save_screenshot(str(Path(shots) / "serve-page.png"))
