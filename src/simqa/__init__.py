"""simqa: semantic similar-question retrieval for medical consultations."""

from simqa.errors import SimqaError
from simqa.records import Consultation, Reply

__all__ = ["Consultation", "Reply", "SimqaError"]
__version__ = "0.1.0"
