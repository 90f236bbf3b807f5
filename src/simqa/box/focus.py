"""Question focus for long consumer questions (issue 20): which parts of a message carry its
question, and how scores against those parts combine into one ranking.

A consultation site receives messages like "Amlodipine. I am taking Amlodipine and it has
caused my pulse rate to be very high. Is there a weaning process when you stop taking
Amlodipine and start atenolol? ...": a short subject the asker wrote, some background, one or
two questions, thanks. One vector of the whole message mixes all of it. The levers here are
pure functions over text and score matrices, so a box can run them around one model call:

- ``split_subject`` / ``sentences`` / ``clauses`` / ``pieces``: the subject line (text before
  the first full stop when it is short, or MeQSum's ``SUBJECT: ... MESSAGE: ...``), the
  sentences, long sentences cut at clause boundaries; greetings, thanks and signatures left
  out; each piece marked ``subject``, ``question`` or ``statement``
- ``is_question``: "?" at the end, a wh-word or modal/auxiliary opening, or a request ("I was
  wondering", "please tell me", "any suggestions")
- ``focus_text``: an extractive focus, the subject (when it names something) and the question
  sentences, else the first sentences
- ``piece_weights`` / ``combine`` / ``blend``: per-document scores of several query vectors
  combined (max, mean of the top few, question-weighted mean or max), blended with the whole
  message's score
- ``terms`` / ``rare_terms`` / ``lexical_bonus``: lexical evidence only where it is strong:
  query words rare in the corpus (drug and condition names the dense model blurs), as the
  share of their IDF mass a consultation contains
- ``name_vocabulary`` / ``mentions`` / ``strong_names``: the same with the names the
  corpus's own short titles give (condition, drug and topic names), matched as whole
  phrases, so that common words rare in a templated corpus ("father", "pretty") are no
  evidence
- ``is_long`` / ``record_focus``: the corpus side, a long consultation's title or focus to
  embed beside its stored vector

Nothing here loads a model or an index; it imports only numpy, ``simqa.records`` and
``simqa.lexicon`` (the name functions, which the index uses too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# the name functions live in simqa.lexicon (the index matches names too); re-exported here
from simqa.lexicon import LONG_WORDS as LONG_WORDS
from simqa.lexicon import NAME_MAX_WORDS as NAME_MAX_WORDS
from simqa.lexicon import PLACEHOLDER as PLACEHOLDER
from simqa.lexicon import STOPWORDS as STOPWORDS
from simqa.lexicon import holds_name as holds_name
from simqa.lexicon import idf as idf
from simqa.lexicon import mentions as mentions
from simqa.lexicon import name_tokens as name_tokens
from simqa.lexicon import name_vocabulary as name_vocabulary
from simqa.lexicon import strong_names as strong_names
from simqa.lexicon import title_name as title_name
from simqa.lexicon import word_count as word_count
from simqa.records import normalise


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


#: a first sentence this short (in words) that does not start as a story is a subject line
SUBJECT_MAX_WORDS = 20
#: a sentence longer than this is cut into clauses by ``clauses``
CLAUSE_MAX_WORDS = 20
#: a piece needs this many words, placeholders and fillers left out
MIN_PIECE_WORDS = 3

#: openings that ask, even without a question mark ("Could smoke cause AMD.")
WH = _set("what why how which who whom whose")
AUX = _set(
    """can could would should will shall may might must is are do does did isn't aren't
    doesn't don't didn't can't couldn't wouldn't shouldn't won't"""
)
# "when", "where", "was", "had"... ask only with a question mark ("When he first had the
# transplant, things were ok.", "Was diagnosed via ...")
#: openings skipped before looking for a wh- or auxiliary word ("So is there ...")
LEAD = _set("so and but also then ok okay now please well hi hello oh")
REQUEST = re.compile(
    r"\b(?:i\s+(?:was|am|'m)\s+wondering|i\s+wonder|wondering\s+(?:if|whether|what|how|why)"
    r"|(?:i\s+)?(?:would\s+like|want|wanna|need|needed|wish)\s+to\s+(?:know|find\s+out|ask)"
    r"|please\s+(?:tell|let|send|advise|explain|suggest|inform|give)|let\s+me\s+know"
    r"|my\s+question\s+is|any\s+(?:suggestions?|advice|ideas?|information|info|hope)"
    r"|is\s+there\s+(?:any|a|anything)|are\s+there\s+any|can\s+you|could\s+you"
    r"|looking\s+for\s+(?:information|info|help|a))\b",
    re.IGNORECASE,
)
#: a whole piece that is only a greeting, thanks or sign-off
FILLER = re.compile(
    r"^(?:(?:hi|hello|hey|dear|greetings|good\s+(?:morning|afternoon|evening)|thanks?|thank\s+you"
    r"|thanks\s+(?:so|very)\s+much|thank\s+you\s+(?:so|very)\s+much|many\s+thanks|best|regards"
    r"|best\s+regards|kind\s+regards|sincerely|god\s+bless|please\s+help(?:\s+me)?|help"
    r"|doctor|dr|sir|madam|sir/madam|all|you|u|in\s+advance|for\s+(?:your|you)\s+(?:help|time)"
    r"|and|for|so|much|very|me|us)[\s,.!:;-]*)+$",
    re.IGNORECASE,
)
#: words a subject line may hold and still say nothing about the question ("general
#: health.", "medication question.", "hi.", "ClinicalTrials.gov - Question - general
#: information.")
GENERIC_SUBJECT = _set(
    """general health information info question questions query inquiry enquiry request
    medication medications medicine medical hi hello hey dear help please urgent consultation
    consult advice advise clinicaltrials gov suggestion suggestions re fwd fw about and the a
    an of for my on to in with symptoms symptom diagnosis treatment need needed can cant can't
    find answer use site website web page latest new customer service details detail doctor
    sir thanks thank you i me"""
)
_ABBREVIATION = re.compile(
    r"(?:\b(?:dr|mr|mrs|ms|st|vs|no|approx|etc|e\.g|i\.e|jr|sr|pl|sp|yrs?|mos?|wks?)|\b[A-Za-z])\.$",
    re.IGNORECASE,
)
# sentence ends: . ! ? (one or more) then space or a word; an ellipsis glued to a word; line
# breaks; a full stop glued to a lowercase word of 4+ letters ("him.Thank", "bad.migranes",
# not "ClinicalTrials.gov" or "2.5")
_SENTENCE_END = re.compile(
    r"(?<=[.!?])\s+|(?<=\.\.)(?=[A-Za-z])|(?<=[?!])(?=[A-Za-z])|\s*\n+\s*"
    r"|(?<=[a-z]{2}\.)(?=[A-Za-z][a-z]{3,})"
)
_LEAD_IN = re.compile(r"^(?:\S+\s+){0,3}\S+\s*(?:\.\.\.+|:)$")
_SUBJECT_FIELD = re.compile(r"^\s*SUBJECT:\s*(.*?)\s*MESSAGE:\s*(.*)$", re.DOTALL)
_STORY_OPENING = _set("i i'm im my we our me hi hello dear hey")
_CLAUSE_BREAK = re.compile(r"\s*(?:[;:]|\s-+\s|--+|\(\s*[a-z]\s*\))\s*")
_SOFT_BREAK = re.compile(r",\s+|\s+(?=(?:and|but|so|because|since|although|or|which)\s)")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'+-]*")
_TERM = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def is_long(text: str, words: int = LONG_WORDS) -> bool:
    return word_count(text) > words


@dataclass(frozen=True)
class Piece:
    """A part of a message: its text, where it starts (order in the message) and its kind:
    ``subject``, ``question`` or ``statement``."""

    text: str
    position: int
    kind: str

    @property
    def is_question(self) -> bool:
        return self.kind == "question"


def split_subject(text: str) -> tuple[str | None, str]:
    """(subject line or None, the rest). MeQSum's ``SUBJECT: ... MESSAGE: ...``, or the first
    sentence when the message goes on and it is short and does not open a story ("I ...",
    "My ...", "Hello ...")."""
    text = normalise(text) if "\n" not in text else text.strip()
    match = _SUBJECT_FIELD.match(text)
    if match:
        subject, body = normalise(match.group(1)), normalise(match.group(2))
        return (subject or None), body
    whole = normalise(text)
    parts = sentences(text)
    if len(parts) < 2 or not whole.startswith(parts[0]):
        return None, whole
    first = parts[0]
    words = _words(first)
    if not words or len(words) > SUBJECT_MAX_WORDS or words[0].casefold() in _STORY_OPENING:
        return None, whole
    return first.rstrip(" .") or None, whole[len(first) :].strip()


def is_generic_subject(subject: str | None) -> bool:
    """True when a subject line names nothing: every word is a generic one."""
    if not subject:
        return True
    words = [w.casefold().strip("'") for w in _WORD.findall(PLACEHOLDER.sub(" ", subject))]
    return all(w in GENERIC_SUBJECT or w.isdigit() for w in words)


def sentences(text: str) -> list[str]:
    """The message cut into sentences (abbreviations like "Dr." do not end one; "2.5" and
    "ClinicalTrials.gov" are not cut)."""
    raw = text.replace("\r", "\n")
    parts = [p.strip() for p in _SENTENCE_END.split(raw)]
    out: list[str] = []
    for part in parts:
        if not part:
            continue
        if out and (
            (_ABBREVIATION.search(out[-1]) and not out[-1].endswith(".."))
            or _LEAD_IN.match(out[-1])  # "My question is... testing her ..."
        ):
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return [normalise(p) for p in out if normalise(p)]


def clauses(sentence: str, max_words: int = CLAUSE_MAX_WORDS, min_words: int = 5) -> list[str]:
    """A long sentence cut at clause boundaries (";", ":", dashes; then commas and
    conjunctions), adjacent short pieces merged so that each has at least ``min_words``."""
    if len(_words(sentence)) <= max_words:
        return [sentence]
    hard = [p for p in _CLAUSE_BREAK.split(sentence) if p and p.strip()]
    out: list[str] = []
    for part in hard:
        if len(_words(part)) <= max_words:
            out.append(part.strip())
            continue
        soft = [p for p in _SOFT_BREAK.split(part) if p and p.strip()]
        out.extend(_merge_short(soft, min_words))
    return _merge_short(out, min_words)


def _merge_short(parts: Sequence[str], min_words: int) -> list[str]:
    merged: list[str] = []
    for part in (p.strip(" ,") for p in parts):
        if not part:
            continue
        if merged and len(_words(merged[-1])) < min_words:
            merged[-1] = f"{merged[-1]} {part}"
        else:
            merged.append(part)
    if len(merged) > 1 and len(_words(merged[-1])) < min_words:
        last = merged.pop()
        merged[-1] = f"{merged[-1]} {last}"
    return merged


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def content(text: str) -> str:
    """The text without placeholders ([NAME], [LOCATION]) and surrounding punctuation."""
    return normalise(PLACEHOLDER.sub(" ", text)).strip(" ,;:-")


def is_filler(text: str) -> bool:
    """A greeting, thanks or sign-off, or too short to say anything (fewer than
    ``MIN_PIECE_WORDS`` words once placeholders are out)."""
    rest = content(text)
    return not rest or bool(FILLER.match(rest)) or len(_words(rest)) < MIN_PIECE_WORDS


def is_question(text: str) -> bool:
    """Does this sentence ask something: it ends with "?", opens with a wh-word or a
    modal/auxiliary (after "so", "and", "please"...; "when", "was", "had"... only with the
    question mark), or makes a request ("I was wondering", "please tell me", "is there
    any", "any suggestions")."""
    rest = content(text)
    if not rest:
        return False
    if rest.rstrip(" .)\"'").endswith("?"):
        return True
    words = [w.casefold() for w in _words(rest)]
    while words and words[0] in LEAD:
        words = words[1:]
    if words and (words[0] in WH or words[0] in AUX):
        return True
    return bool(REQUEST.search(rest))


def pieces(
    text: str,
    *,
    split: str = "sentence",
    subject: bool = True,
    max_words: int = CLAUSE_MAX_WORDS,
) -> list[Piece]:
    """The parts of a message to embed one by one: the subject line (when ``subject`` and it
    names something), then its sentences (``split="sentence"``) or clauses
    (``split="clause"``: sentences longer than ``max_words`` cut by ``clauses``), greetings,
    thanks and signatures left out. A clause of a question sentence counts as a question.
    Every message gives at least one piece (the whole text when nothing else is left)."""
    if split not in ("sentence", "clause"):
        raise ValueError(f"split is 'sentence' or 'clause', not {split!r}")
    head, body = split_subject(text)
    out: list[Piece] = []
    position = 0
    if subject and head and not is_generic_subject(head):
        out.append(Piece(content(head), position, "subject"))
    for sentence in sentences(body):
        position += 1
        question = is_question(sentence)
        parts = clauses(sentence, max_words) if split == "clause" else [sentence]
        for part in parts:
            if is_filler(part):
                continue
            kind = "question" if question or is_question(part) else "statement"
            out.append(Piece(content(part), position, kind))
    # the same text twice ("quinine in seltzer water.. quinine in seltzer water.") is one
    seen: set[str] = set()
    unique = []
    for piece in out:
        key = " ".join(_words(piece.text.casefold()))
        if key not in seen:
            seen.add(key)
            unique.append(piece)
    return unique or [Piece(normalise(text), 0, "statement")]


def focus_text(text: str, part: str = "sq", first: int = 2) -> str:
    """An extractive focus of a message, embedded instead of (or beside) the whole text.

    ``part``: ``q`` the question sentences; ``s`` the subject line (when it names
    something); ``sq`` both; ``f`` the first ``first`` sentences (subject included when it
    names something). Without a question sentence, ``q`` and ``sq`` fall back to the first
    ``first`` sentences after the subject; an empty focus is the whole text."""
    if part not in ("q", "s", "sq", "f"):
        raise ValueError(f"part is one of q, s, sq, f, not {part!r}")
    found = pieces(text, split="sentence", subject=True)
    head = [p.text for p in found if p.kind == "subject"]
    body = [p for p in found if p.kind != "subject"]
    questions = [p.text for p in body if p.is_question]
    if part == "s":
        chosen = head
    elif part == "f":
        chosen = head + [p.text for p in body[:first]]
    else:
        asked = questions or [p.text for p in body[:first]]
        chosen = (head if part == "sq" else []) + asked
    return " ".join(chosen) if chosen else normalise(text)


def piece_weights(
    found: Sequence[Piece], question: float = 1.0, subject: float = 1.0
) -> np.ndarray:
    """One weight per piece: ``question`` for question sentences, ``subject`` for the subject
    line, 1 for the rest (question-ness as a weight)."""
    by_kind = {"question": question, "subject": subject, "statement": 1.0}
    return np.array([by_kind[p.kind] for p in found], dtype=np.float32)


COMBINATIONS = ("max", "wmax", "mean", "top")


def combine(
    scores: np.ndarray,
    weights: np.ndarray | None = None,
    how: str = "max",
    top: int = 2,
) -> np.ndarray:
    """Per document, one score from the scores of several query vectors (``scores``: pieces
    x documents, cosines).

    - ``max``: the best piece's score
    - ``wmax``: the best of ``weight / max weight x score`` (pieces of lower weight, say
      statements beside questions, count for less)
    - ``mean``: the weighted mean
    - ``top``: the mean of each document's ``top`` best piece scores
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float32))
    n = scores.shape[0]
    w = np.ones(n, dtype=np.float32) if weights is None else np.asarray(weights, np.float32)
    if w.shape != (n,):
        raise ValueError(f"{n} pieces but {w.shape} weights")
    if how == "max":
        return scores.max(axis=0)
    if how == "wmax":
        return (scores * (w / w.max())[:, None]).max(axis=0)
    if how == "mean":
        return (w[:, None] * scores).sum(axis=0) / w.sum()
    if how == "top":
        m = max(1, min(top, n))
        best = np.partition(scores, n - m, axis=0)[n - m :]
        return best.mean(axis=0)
    raise ValueError(f"how is one of {', '.join(COMBINATIONS)}, not {how!r}")


def blend(whole: np.ndarray, focused: np.ndarray, whole_weight: float) -> np.ndarray:
    """``whole_weight x whole + (1 - whole_weight) x focused``: the whole message's scores
    beside the focused ones (1 keeps the whole message only, 0 drops it)."""
    if not 0.0 <= whole_weight <= 1.0:
        raise ValueError(f"whole_weight is in [0, 1], not {whole_weight}")
    return whole_weight * np.asarray(whole) + (1.0 - whole_weight) * np.asarray(focused)


# --- lexical evidence -----------------------------------------------------------------------


def terms(text: str) -> list[str]:
    """Lower-case word terms of a text (hyphenated words kept whole and also in parts;
    placeholders left out)."""
    found = _TERM.findall(PLACEHOLDER.sub(" ", text).casefold())
    out = []
    for term in found:
        out.append(term)
        if "-" in term:
            out.extend(p for p in term.split("-") if p and p[0].isalpha())
    return out


def document_frequencies(texts: Iterable[str]) -> tuple[dict[str, int], int]:
    """(documents holding each term, number of documents)."""
    df: dict[str, int] = {}
    n = 0
    for text in texts:
        n += 1
        for term in set(terms(text)):
            df[term] = df.get(term, 0) + 1
    return df, n


def rare_terms(
    text: str, df: Mapping[str, int], n: int, min_idf: float = 5.5, min_chars: int = 4
) -> dict[str, float]:
    """The query's terms rare enough to be strong evidence: in the corpus at all (a term no
    consultation holds cannot match), but in few of its documents (``idf >= min_idf``), at
    least ``min_chars`` long and not a common English word. -> {term: idf}."""
    out: dict[str, float] = {}
    for term in terms(text):
        if len(term) < min_chars or term in STOPWORDS or term in out:
            continue
        count = df.get(term, 0)
        if count and idf(count, n) >= min_idf:
            out[term] = idf(count, n)
    return out


def lexical_bonus(rare: Mapping[str, float], doc_terms: Iterable[str]) -> float:
    """The share of the query's rare-term IDF mass a document holds (0 when the query has no
    rare term): 1 when it names every rare drug or condition the query names."""
    total = sum(rare.values())
    if not total:
        return 0.0
    held = set(doc_terms)
    return sum(v for t, v in rare.items() if t in held) / total


# --- names: condition and drug names the corpus's own titles hold ------------------------
# name_tokens, title_name, name_vocabulary, mentions, holds_name, strong_names: simqa.lexicon


# --- the corpus side ------------------------------------------------------------------------


def record_focus(title: str, question: str, part: str = "title") -> str | None:
    """What to embed beside a long consultation's stored vector (title + question): its
    ``title`` (sites title a consultation with a one-line summary) or its extractive
    ``focus`` (``focus_text`` of "title. question"); None when the consultation is short or
    the title only repeats the start of its question."""
    if not is_long(question):
        return None
    if part == "title":
        head, rest = normalise(title), normalise(question)
        if not head or rest.casefold().startswith(head.casefold().rstrip(" .?")[:40]):
            return None
        return head
    if part == "focus":
        return focus_text(f"{normalise(title).rstrip('. ')}. {normalise(question)}", "sq")
    raise ValueError(f"part is 'title' or 'focus', not {part!r}")
