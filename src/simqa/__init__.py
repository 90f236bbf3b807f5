"""simqa: semantic similar-question retrieval for medical consultations.

import simqa
index = simqa.open_index("consults")            # built with: simqa build SOURCES --index consults
box = simqa.Box.for_question(index, "leg jerks while falling asleep", k=4)
print(simqa.render(box, "text"))                # the Similar Q&A box and its Related FAQ

The data flow reads from the packages: ``records`` -> ``ingest`` -> ``encode`` -> ``index``
(``vectors``, ``milvus``) -> ``box`` -> ``serve`` / ``cli``, with ``learn`` and ``evaluate``
on the side.
"""

from importlib.metadata import version

from simqa.box.box import Box
from simqa.box.render import render
from simqa.errors import SimqaError
from simqa.index import Hit, Index, SimilarIndex, build, open_index
from simqa.records import Consultation, Reply

__all__ = [
    "Box", "Consultation", "Hit", "Index", "Reply", "SimilarIndex", "SimqaError", "build",
    "open_index", "render",
]  # fmt: skip
__version__ = version("simqa")
