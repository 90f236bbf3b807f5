"""``simqa serve``: the Similar Q&A box over HTTP, and a page a person can use.

One FastAPI app per worker process (``create_app``), one router per resource in
``routes/``; the index and the model are opened once per worker, and every request first
picks up the newest published version of the index, so a write made through any worker
(or any process) is seen by all of them at once.
"""

from simqa.serve.app import create_app
from simqa.serve.server import serve

__all__ = ["create_app", "serve"]
