"""simqa serve run like a service, against real processes: caching by index version (ETag,
304, Cache-Control) through a write, Prometheus metrics added up over two workers, CORS
(a preflight with httpx, and a page on another loopback port in headless Chromium), a
clean stop on SIGTERM during a stream of writes, and one settings model."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import simqa
from simqa.errors import SimqaError
from simqa.serve.settings import Settings
from tests.helpers import SEED_ID, Server, chromium, free_port, small_index

#: builds its own indexes, starts servers or trains: `pytest -m "not slow"` skips it
pytestmark = pytest.mark.slow

TOKEN = "ops-write-token-0123456789"
LEGS = "my legs jerk when I am falling asleep"
HIV_ID = "questiondoctors-is-my-anti-hiv-test-conclusive-or-need-retest"
#: every cacheable read, as a site would ask
READS = [
    f"/v1/similar/{SEED_ID}?k=3",
    f"/v1/similar/{SEED_ID}?k=2&format=html",
    "/v1/search?q=my+legs+jerk+when+I+am+falling+asleep&k=3",
    f"/v1/consultations/{SEED_ID}",
    "/?q=legs+jerk",
    f"/c/{SEED_ID}",
]


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


# --- a page on another loopback port -------------------------------------------------------


class Pages:
    """A plain HTTP server on its own loopback port, serving one page (another origin)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.body = b""
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(pages.body)))
                self.end_headers()
                self.wfile.write(pages.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def origin(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def pages() -> Iterator[Pages]:
    served = Pages()
    yield served
    served.close()


# --- one server: two workers, writes on, settings from flags, variables and a file ----------


@pytest.fixture(scope="module")
def index_path(tmp_path_factory) -> Path:
    return small_index(tmp_path_factory.mktemp("ops") / "consults")


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, pages) -> Path:
    path = tmp_path_factory.mktemp("config") / "simqa.toml"
    path.write_text(
        "# simqa serve settings\n"
        "workers = 1\n"  # SIMQA_WORKERS=1, then --workers 2 win
        'cache_control = "max-age=5"\n'  # SIMQA_CACHE_CONTROL wins
        f'cors_origins = ["{pages.origin()}"]\n'
        "shutdown_timeout = 20\n"
    )
    return path


@pytest.fixture(scope="module")
def api(index_path, config_file, tmp_path_factory) -> Iterator[Server]:
    env = {"SIMQA_WORKERS": "1", "SIMQA_CACHE_CONTROL": "max-age=60, must-revalidate"}
    server = Server(
        index_path,
        tmp_path_factory.mktemp("logs") / "ops.log",
        "--workers", "2", "--config", str(config_file),
        token=TOKEN,
        env=env,
    )  # fmt: skip
    yield server
    server.stop()


def test_settings_come_from_flags_then_variables_then_the_file(api, pages):
    info = api.get("/v1/info")
    settings = info.json()["settings"]
    assert settings["workers"] == 2  # the flag, over SIMQA_WORKERS and the file
    assert settings["cache_control"] == "max-age=60, must-revalidate"  # SIMQA_, over the file
    assert settings["cors_origins"] == [pages.origin()]  # the file
    assert settings["shutdown_timeout"] == 20
    assert settings["metrics"] is True and settings["cors_writes"] is False  # defaults
    assert settings["writes"] is True and info.json()["writes"] is True
    assert "write_token" not in settings and "index" not in settings
    for path in ("/v1/info", "/metrics", "/openapi.json"):
        assert TOKEN not in api.get(path).text
    assert TOKEN not in api.log.read_text()


# --- caching by index version --------------------------------------------------------------


def _scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer: (name, labels) -> value."""
    response = server.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_every_read_has_a_strong_etag_and_a_304(api):
    for path in READS:
        first = api.get(path)
        assert first.status_code == 200, (path, first.text)
        tag = first.headers["etag"]
        assert tag.startswith('"v000001-') and tag.endswith('"'), tag  # strong: no W/
        assert first.headers["cache-control"] == "max-age=60, must-revalidate"
        for _ in range(4):  # new connections: both workers answer, with the same bytes
            again = api.get(path)
            assert again.headers["etag"] == tag and again.content == first.content
        same = api.get(path, headers={"If-None-Match": tag})
        assert same.status_code == 304, path
        assert same.content == b""
        assert same.headers["etag"] == tag
        assert same.headers["cache-control"] == "max-age=60, must-revalidate"
        listed = api.get(path, headers={"If-None-Match": f'"other", W/{tag}'})
        assert listed.status_code == 304  # a list, and a tag a proxy weakened
        assert api.get(path, headers={"If-None-Match": '"v000001-0"'}).status_code == 200
    tags = {api.get(path).headers["etag"] for path in READS}
    assert len(tags) == len(READS)  # each request its own tag
    assert (
        api.get("/v1/search?k=3&q=my+legs+jerk+when+I+am+falling+asleep").headers["etag"]
        == api.get(READS[2]).headers["etag"]
    )  # the query's order does not matter


def test_errors_writes_and_status_are_not_cached(api):
    for path in ("/v1/similar/no-such-id", "/v1/search?q=legs&k=0", "/c/no-such-id", "/nothing"):
        response = api.get(path)
        assert response.status_code >= 400
        assert "etag" not in response.headers
        assert response.headers["cache-control"] == "no-store"
        assert api.get(path, headers={"If-None-Match": "*"}).status_code == response.status_code
    for path in ("/healthz", "/v1/info", "/metrics"):
        assert api.get(path).headers["cache-control"] == "no-store"
    refused = api.post("/v1/consultations", json=[{"id": "x", "question": "q"}])
    assert refused.status_code == 401 and refused.headers["cache-control"] == "no-store"
    posted = api.post("/v1/search", json={"q": LEGS})
    assert posted.headers["cache-control"] == "no-store" and "etag" not in posted.headers


def test_a_304_searches_nothing(api):
    path = "/v1/search?q=why+does+my+knee+click+on+the+stairs&k=2"
    tag = api.get(path).headers["etag"]
    before = _scrape(api)
    for _ in range(5):
        assert api.get(path, headers={"If-None-Match": tag}).status_code == 304
    after = _scrape(api)
    assert _value(after, "simqa_encoded_texts_total") == _value(before, "simqa_encoded_texts_total")
    assert api.get(path).status_code == 200
    assert (
        _value(_scrape(api), "simqa_encoded_texts_total")
        == _value(after, "simqa_encoded_texts_total") + 1
    )


def test_a_write_changes_the_tags(api):
    """Through a write: every tag held before it is stale (200, a new tag), the new tags
    304; a delete changes them again."""
    held = {path: api.get(path).headers["etag"] for path in READS}
    version = held[READS[0]].split("-")[0]
    new = {"id": "ops-etag-write", "question": "Why do my legs twitch just as I fall asleep?"}
    assert api.post("/v1/consultations", json=[new], headers=_auth()).status_code == 200
    fresh = {}
    for path, tag in held.items():
        for _ in range(3):  # both workers have moved to the new version
            answer = api.get(path, headers={"If-None-Match": tag})
            assert answer.status_code == 200, path
            assert answer.headers["etag"] != tag and answer.headers["etag"].split("-")[0] > version
            fresh[path] = answer.headers["etag"]
        assert api.get(path, headers={"If-None-Match": fresh[path]}).status_code == 304
    assert api.get("/v1/consultations/ops-etag-write").status_code == 200
    assert api.delete("/v1/consultations/ops-etag-write", headers=_auth()).status_code == 200
    for path, tag in fresh.items():
        assert api.get(path, headers={"If-None-Match": tag}).status_code == 200
    gone = api.get("/v1/consultations/ops-etag-write", headers={"If-None-Match": "*"})
    assert gone.status_code == 404


# --- metrics --------------------------------------------------------------------------------


def _multiproc_dir(server: Server) -> Path:
    """The metrics folder the server made, as its workers (its children) see it."""
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent != server.process.pid:
            continue
        for variable in environ:
            if variable.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                return Path(variable.split(b"=", 1)[1].decode())
    raise AssertionError("no worker of the server has PROMETHEUS_MULTIPROC_DIR")


def test_metrics_add_up_over_both_workers(api):
    """Mixed traffic on new connections (both workers answer), then the counts of one
    scrape, answered by either worker, are exactly what was sent."""
    before = _scrape(api)
    sent: Counter[tuple[str, str, str]] = Counter()

    def send(method: str, path: str, route: str, status: int, **kwargs) -> httpx.Response:
        response = httpx.request(method, api.url + path, timeout=120, **kwargs)
        assert response.status_code == status, (path, response.text)
        sent[(method, route, str(status))] += 1
        return response

    sent[("GET", "/metrics", "200")] += 1  # the scrape before
    similar = "/v1/similar/{record_id}"
    for n in range(12):
        send("GET", f"/v1/similar/{SEED_ID}?k={n % 4 + 1}", similar, 200)
    tag = send("GET", f"/v1/similar/{SEED_ID}?k=3", similar, 200).headers["etag"]
    for _ in range(5):
        send("GET", f"/v1/similar/{SEED_ID}?k=3", similar, 304, headers={"If-None-Match": tag})
    questions = [f"{LEGS} {n}" for n in range(7)]
    for question in questions:
        send("GET", "/v1/search", "/v1/search", 200, params={"q": question})
    send("POST", "/v1/search", "/v1/search", 200, json={"queries": ["a rash", "a cough"]})
    for _ in range(3):
        send("GET", "/v1/similar/no-such-id", similar, 404)
    send("GET", "/v1/search?q=legs&k=0", "/v1/search", 422)
    send("GET", "/no/such/page", "unmatched", 404)
    send("GET", f"/c/{SEED_ID}", "/c/{record_id}", 200)
    record = {"id": "ops-metrics", "question": "Can a sprained ankle cause numb toes?"}
    send("POST", "/v1/consultations", "/v1/consultations", 200, json=[record], headers=_auth())
    send("POST", "/v1/consultations", "/v1/consultations", 401, json=[record])
    send(
        "DELETE", "/v1/consultations/ops-metrics", "/v1/consultations/{record_id}", 200,
        headers=_auth(),
    )  # fmt: skip
    send(
        "OPTIONS", "/v1/search", "/v1/search", 200,
        headers={"Origin": api.get("/v1/info").json()["settings"]["cors_origins"][0],
                 "Access-Control-Request-Method": "GET"},
    )  # fmt: skip
    sent[("GET", "/v1/info", "200")] += 1
    after = _scrape(api)

    requests = "simqa_http_requests_total"
    changed = {
        (dict(labels)["method"], dict(labels)["route"], dict(labels)["status"]): value
        - before.get((name, labels), 0.0)
        for (name, labels), value in after.items()
        if name == requests and value != before.get((name, labels), 0.0)
    }
    assert changed == dict(sent)
    routes = {(method, route) for method, route, _ in sent}
    for method, route in routes:  # each route's latency histogram counted its requests
        n = sum(v for (m, r, _), v in sent.items() if (m, r) == (method, route))
        count = "simqa_http_request_duration_seconds_count"
        labels = {"method": method, "route": route}
        assert _value(after, count, **labels) - _value(before, count, **labels) == n

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("simqa_writes_total", operation="add", outcome="ok") == 1
    assert delta("simqa_writes_total", operation="add", outcome="refused") == 1
    assert delta("simqa_writes_total", operation="delete", outcome="ok") == 1
    assert delta("simqa_write_duration_seconds_count", operation="add") == 1
    assert delta("simqa_write_duration_seconds_count", operation="delete") == 1
    assert _value(after, "simqa_writes_in_progress") == 0
    assert delta("simqa_encoded_texts_total") == len(questions) + 2
    assert delta("simqa_encode_duration_seconds_count") == len(questions) + 1  # a batch: 1 call
    version = api.get("/v1/info").json()["version"]
    assert _value(after, "simqa_index_version") == int(version[1:])
    assert _value(after, "simqa_index_records") == api.get("/healthz").json()["records"]
    # both workers counted: each keeps its own files, and the scrape added them up
    files = _multiproc_dir(api).glob("counter_*.db")
    assert len({path.stem.split("_")[1] for path in files}) >= 2


# --- cross-origin use ------------------------------------------------------------------------


def test_preflights(api, pages):
    site, other = pages.origin(), pages.origin("localhost")
    read = {
        "Origin": site, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "if-none-match",
    }  # fmt: skip
    answer = httpx.options(f"{api.url}/v1/similar/{SEED_ID}", headers=read)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == site
    assert "GET" in answer.headers["access-control-allow-methods"]
    posted = {"Origin": site, "Access-Control-Request-Method": "POST",
              "Access-Control-Request-Headers": "content-type"}  # fmt: skip
    assert httpx.options(f"{api.url}/v1/search", headers=posted).status_code == 200
    # another origin may not read; no origin may write (no --cors-writes)
    stranger = httpx.options(f"{api.url}/v1/search", headers={**read, "Origin": other})
    assert stranger.status_code == 400 and "access-control-allow-origin" not in stranger.headers
    for method, path in (("POST", "/v1/consultations"), ("DELETE", f"/v1/consultations/{SEED_ID}")):
        write = {"Origin": site, "Access-Control-Request-Method": method,
                 "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
        refused = httpx.options(api.url + path, headers=write)
        assert refused.status_code == 403, (method, refused.text)
        assert "--cors-writes" in refused.json()["error"]
        assert not [h for h in refused.headers if h.startswith("access-control-")]
    # the answer itself: allowed origin mirrored, ETag readable by the page, Vary: Origin
    box = api.get(f"/v1/similar/{SEED_ID}", headers={"Origin": site})
    assert box.headers["access-control-allow-origin"] == site
    assert "ETag" in box.headers["access-control-expose-headers"]
    assert "Origin" in box.headers["vary"]
    assert (
        "access-control-allow-origin"
        not in api.get(f"/v1/similar/{SEED_ID}", headers={"Origin": other}).headers
    )


def test_cross_origin_writes_only_when_allowed(index_path, tmp_path):
    site = "https://admin.example-health.org"
    server = Server(index_path, tmp_path / "writes.log", "--cors-origin", site, "--cors-writes")
    try:
        asked = {"Origin": site, "Access-Control-Request-Method": "DELETE",
                 "Access-Control-Request-Headers": "authorization"}  # fmt: skip
        answer = httpx.options(f"{server.url}/v1/consultations/{SEED_ID}", headers=asked)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == site
        assert "DELETE" in answer.headers["access-control-allow-methods"]
        other = httpx.options(
            f"{server.url}/v1/consultations/{SEED_ID}", headers={**asked, "Origin": "https://x.org"}
        )
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    finally:
        server.stop()


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>A site's page</title></head>
<body><h1>Restless legs at night</h1><div id="box">loading</div><p id="status"></p>
<script>
const api = "%(api)s", status = document.getElementById("status");
async function main() {
  try {
    const r = await fetch(api + "/v1/similar/%(id)s?k=2&format=html");
    document.getElementById("box").innerHTML = await r.text();
    status.dataset.read = "ok " + r.status;
    status.dataset.etag = r.headers.get("ETag") || "";
  } catch (e) { status.dataset.read = "blocked"; }
  try {
    const w = await fetch(api + "/v1/consultations/%(id)s",
                          {method: "DELETE", headers: {Authorization: "Bearer %(token)s"}});
    status.dataset.write = "sent " + w.status;
  } catch (e) { status.dataset.write = "blocked"; }
  status.dataset.done = "yes";
}
main();
</script></body></html>
"""


def test_a_page_on_another_origin_shows_a_box_in_chromium(api, pages):
    """A page on another loopback port fetches the box and shows it; its script may not
    delete a consultation, even holding the token; a page from an origin not listed (the
    same port, as localhost) gets nothing."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    pages.body = (PAGE % {"api": api.url, "id": SEED_ID, "token": TOKEN}).encode()
    browser = chromium()
    try:
        seen = {}
        for host in ("127.0.0.1", "localhost"):
            browser.get(pages.origin(host) + "/")
            WebDriverWait(browser, 60).until(
                lambda b: b.execute_script("return document.getElementById('status').dataset.done")
            )
            status = browser.find_element(By.ID, "status")
            seen[host] = {
                key: status.get_attribute(f"data-{key}") for key in ("read", "write", "etag")
            }
            seen[host]["articles"] = len(
                browser.find_elements(By.CSS_SELECTOR, "#box section.similar-qa article")
            )
    finally:
        browser.quit()
    assert seen["127.0.0.1"]["read"] == "ok 200"
    assert seen["127.0.0.1"]["articles"] == 2
    assert seen["127.0.0.1"]["etag"].startswith('"v0')
    assert seen["127.0.0.1"]["write"] == "blocked"
    assert seen["localhost"] == {"read": "blocked", "write": "blocked", "etag": None, "articles": 0}
    assert api.get(f"/v1/consultations/{SEED_ID}").status_code == 200  # never deleted


def _workers(server: Server) -> list[int]:
    """The server's uvicorn workers: its children started by multiprocessing's spawn."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == server.process.pid and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def test_a_killed_worker_leaves_the_live_gauges_and_its_counts_stay(api):
    """SIGKILL one worker: uvicorn starts another; the next scrape drops the dead one's live
    gauges (its files) and keeps every request it counted."""
    folder = _multiproc_dir(api)
    for _ in range(6):
        api.get(f"/v1/similar/{SEED_ID}")
    before = _scrape(api)
    victim = _workers(api)[0]
    assert list(folder.glob(f"gauge_live*_{victim}.db"))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{victim}").exists():  # until the supervisor has reaped it
        assert time.monotonic() < deadline
        time.sleep(0.1)
    after = _scrape(api)
    assert not list(folder.glob(f"gauge_live*_{victim}.db"))
    total = "simqa_http_requests_total"
    for key, value in before.items():
        if key[0] == total:
            assert after.get(key, 0.0) >= value, key  # the dead worker's counts stay
    assert _value(after, "simqa_index_records") == api.get("/healthz").json()["records"]
    deadline = time.monotonic() + 120
    while len(_workers(api)) < 2:  # uvicorn has started a new one
        assert time.monotonic() < deadline
        time.sleep(0.2)


# --- a clean stop -------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "workers"), [("server", 2), ("group", 2), ("server", 1)])
def test_sigterm_during_writes_loses_nothing_and_adds_nothing(
    index_path, tmp_path, target, workers
):
    """SIGTERM while six clients write: to the server process (a container runtime), or
    to its whole process group (systemd), writing processes included. Afterwards the index
    holds every write that was acknowledged and none that was not; the server exits 0."""
    copy = tmp_path / "consults"
    shutil.copytree(index_path, copy)
    server = Server(copy, tmp_path / "stop.log", "--workers", str(workers), token=TOKEN)
    metrics_dir = _multiproc_dir(server) if workers > 1 else None
    outcomes: dict[str, str] = {}
    timeline: dict[str, tuple[float, float]] = {}
    signalled_at = [0.0]
    lock = threading.Lock()

    def writer(client: int) -> None:
        for n in range(1000):
            record_id = f"stop-{client}-{n}"
            record = {"id": record_id, "question": f"Question {n} from client {client}: why "
                      "does my left elbow ache when I lift a kettle?"}  # fmt: skip
            started = time.monotonic()
            try:
                answer = httpx.post(
                    server.url + "/v1/consultations", json=[record], headers=_auth(), timeout=120
                )
                outcome = str(answer.status_code)
                if answer.status_code == 503:
                    assert "send it again" in answer.json()["error"]
            except httpx.ConnectError:
                outcome = "not connected"
            except httpx.TransportError as exc:
                outcome = f"cut: {type(exc).__name__}"
            with lock:
                outcomes[record_id] = outcome
                timeline[record_id] = (started, time.monotonic())
            if outcome == "not connected" or outcome.startswith("cut") or n > 200:
                return

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(writer, c) for c in range(6)]
        deadline = time.monotonic() + 300
        while sum(o == "200" for o in list(outcomes.values())) < 10:
            assert time.monotonic() < deadline, outcomes
            time.sleep(0.05)
        signalled_at[0] = time.monotonic()
        if target == "server":
            server.process.send_signal(signal.SIGTERM)
        else:
            os.killpg(server.process.pid, signal.SIGTERM)
        for future in futures:
            future.result()
    assert server.process.wait(120) == 0, server.log.read_text()[-3000:]

    acknowledged = {i for i, o in outcomes.items() if o == "200"}
    index = simqa.open_index(copy, verify=True)  # every file whole, checksums right
    try:
        written = {r.id for r in index.records() if r.id.startswith("stop-")}
    finally:
        index.close()
    counts = Counter(outcomes.values())
    in_flight = [i for i in acknowledged if timeline[i][0] < signalled_at[0] < timeline[i][1]]
    print(
        f"\nSIGTERM to the {target} ({workers} worker{'s' * (workers > 1)}): "
        f"{len(outcomes)} writes sent, "
        f"{counts['200']} acknowledged ({len(in_flight)} of them in flight at the signal), "
        f"{counts['503']} refused with 503, {counts['not connected']} not connected, "
        f"{sum(v for k, v in counts.items() if k.startswith('cut'))} cut off; "
        f"the index holds {len(written)} of them"
    )
    assert written == acknowledged
    # a write either answered (200, or 503: not started), refused a connection, or cut off
    # on a connection the server closed before it read the request (an HTTP/1.1 server
    # closes idle connections when it stops); none of the last three is in the index
    assert set(counts) <= {"200", "503", "not connected", "cut: ReadError",
                           "cut: RemoteProtocolError"}, counts  # fmt: skip
    assert len(in_flight) + counts["503"] >= 1, "no write was in flight at the signal"
    assert not [p for p in copy.iterdir() if p.name.startswith(".staging-")]
    assert "Traceback" not in server.log.read_text()
    assert metrics_dir is None or not metrics_dir.exists()  # the server removed it


# --- settings at start ------------------------------------------------------------------------


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SIMQA_")}
    environ["SIMQA_HOME"] = os.environ.get("SIMQA_HOME", "")
    return subprocess.run(
        [sys.executable, "-m", "simqa", "serve", *args],
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {"SIMQA_PORT": "eighty"}, "simqa: error: SIMQA_PORT: Input should be a valid integer"),
        ([], {"SIMQA_WORKERS": "0"}, "simqa: error: SIMQA_WORKERS: Input should be greater"),
        (["--cors-origin", "https://site.example/"], {}, "simqa: error: 'https://site.example/'"),
        ([], {"SIMQA_METRICS": "perhaps"}, "simqa: error: SIMQA_METRICS: Input should be a valid"),
        (["--max-body-bytes", "10"], {}, "simqa: error: the body size limit must be 1024"),
        ([], {"SIMQA_WRITE_TOKEN": "short"}, "simqa: error: the write token must be at least"),
        (["--config", "/no/such/simqa.toml"], {}, "simqa: error: settings file /no/such"),
        ([], {"SIMQA_CONFIG": "BAD"}, "simqa: error: unknown setting 'cors_origin' in"),
    ],
)
def test_a_bad_setting_stops_the_start_in_one_line(tmp_path, args, env, expected):
    if env.get("SIMQA_CONFIG") == "BAD":
        bad = tmp_path / "bad.toml"
        bad.write_text('cors_origin = ["https://site.example"]\n')
        env = {"SIMQA_CONFIG": str(bad)}
    result = _start("--index", str(tmp_path / "none"), *args, env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(expected), result.stderr
    assert result.stderr.count("\n") == 1  # one line
    assert "short" not in result.stderr  # a token is never echoed


def test_settings_precedence(tmp_path, monkeypatch):
    """Flags over SIMQA_* variables over the file over the defaults (no process needed)."""
    file = tmp_path / "serve.toml"
    file.write_text('port = 9001\nhost = "0.0.0.0"\nworkers = 3\ncors_origins = ["*"]\n')
    monkeypatch.setenv("SIMQA_PORT", "9002")
    monkeypatch.setenv("SIMQA_WORKERS", "4")
    monkeypatch.setenv("SIMQA_CORS_ORIGINS", "https://a.example, https://b.example")
    settings = Settings.load({"workers": 5, "metrics": None}, file)
    assert (settings.port, settings.host, settings.workers) == (9002, "0.0.0.0", 5)
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.cache_control == "max-age=30, must-revalidate" and settings.metrics
    monkeypatch.setenv("SIMQA_CONFIG", str(file))
    monkeypatch.delenv("SIMQA_PORT")
    assert Settings.load().port == 9001
    with pytest.raises(SimqaError, match="unknown settings: colour"):
        Settings.load({"colour": "blue"})
    assert Settings.of(workers=2).port == 8000  # given values alone: no variable, no file
