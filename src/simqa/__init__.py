"""simqa: semantic similar-question retrieval for medical consultations.

import simqa
index = simqa.build(["../shared/data/lasseregin_medical_qa"], "consults")
hits = index.search("leg jerks while falling asleep", k=4)
print(simqa.render(hits, "text"))
"""

from importlib.metadata import version

from simqa.box.render import render
from simqa.errors import SimqaError
from simqa.index import Hit, Index, build, open_index
from simqa.records import Consultation, Reply

__all__ = ["Consultation", "Hit", "Index", "Reply", "SimqaError", "build", "open_index", "render"]
__version__ = version("simqa")
