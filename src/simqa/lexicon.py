"""Names: the condition, drug and topic names a corpus's own short titles give, matched in
text as whole phrases; and the names lever of issue 20 that ranks with them.

A long consumer question ("... my son was diagnosed with Klippel-Feil syndrome and I want
to know ...") blurs in one vector; a name few consultations hold is strong evidence the
dense model does not weigh. ``NameLever`` says how the box uses it: for a question of more
than ``long_words`` words, the names it mentions (``mentions`` of the live records' titles'
``title_name``) that few live records hold (``strong_names``: idf >= ``min_idf``) add
``weight`` x the share of their idf mass a record holds to its cosine, and every live record
holding one is a candidate. ``NAMES`` is the measured setting (``names-lw.2`` in
benchmarks/judged).

Pure functions over text: this module imports only the standard library, so both the
index (``simqa.index.names``: phrase postings per base and delta segment) and the box's
focus levers (``simqa.box.focus``, which re-exports these) use one definition.
"""

from __future__ import annotations

import math
import re
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


#: issue 20's long questions: more than this many whitespace-separated words
LONG_WORDS = 30
#: a title of at most this many words that is not a question names a condition, drug or topic
NAME_MAX_WORDS = 6

#: common English words never taken as rare evidence, whatever their corpus frequency
STOPWORDS = _set(
    """a about above after again against all also am an and any are aren't as at be because
    been before being below between both but by can can't cannot could couldn't did didn't do
    does doesn't doing don't down during each even ever every few for from further get gets
    got had hadn't has hasn't have haven't having he her here hers herself him himself his how
    however i i'd i'll i'm i've if in into is isn't it it's its itself just know like me more
    most much my myself no nor not now of off on once only or other our ours ourselves out over
    own please really same she should shouldn't so some still such than thank thanks that the
    their theirs them themselves then there these they this those though through to too under
    until up upon us very was wasn't we were weren't what when where which while who whom why
    will with won't would wouldn't yes yet you your yours yourself yourselves hello dear
    doctor sir also since ago year years old month months week weeks day days time times
    today yesterday tomorrow lot lots thing things something anything someone anyone"""
)

#: placeholders the data sets put for names and places
PLACEHOLDER = re.compile(r"\[(?:NAME|LOCATION|CONTACT|DATE|ID)\]|\*NAME\*|\bNAME\b")
_NAME_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class NameLever:
    """How a box ranks a long question with the names it mentions (see the module's doc):
    questions of ``long_words`` words or fewer are left as they are."""

    long_words: int = LONG_WORDS
    min_idf: float = 5.5
    weight: float = 0.2

    def applies(self, query: str) -> bool:
        return word_count(query) > self.long_words


#: the lever as measured and chosen (benchmarks/results/levers_choose.md, judged_report.md)
NAMES = NameLever()


def word_count(text: str) -> int:
    """Whitespace-separated words (benchmarks/judged counts long questions this way)."""
    return len(text.split())


def idf(df: int, n: int) -> float:
    return math.log(n / df) if df > 0 else 0.0


def name_tokens(text: str) -> list[str]:
    """Lower-case word tokens for name matching: hyphens and punctuation split words, a
    possessive loses its "'s", and a plain plural of 7 letters or more is folded
    ("miscarriages", "seizures"). Short words are not folded: the title "Falls" must not
    make a name "fall" that "my legs fall asleep" would mention."""
    out = []
    for token in _NAME_TOKEN.findall(PLACEHOLDER.sub(" ", text).casefold()):
        token = token.removesuffix("'s")
        if len(token) >= 7 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
            token = token[:-1]
        out.append(token)
    return out


def title_name(title: str, max_words: int = NAME_MAX_WORDS) -> str | None:
    """The name a title gives, as space-joined ``name_tokens``: a title of at most
    ``max_words`` words that is not a question and not made only of common words
    ("Complex regional pain syndrome", "Fibromyalgia", "Skin Cancer"); else None."""
    if not title or "?" in title:
        return None
    tokens = name_tokens(title)
    if 0 < len(tokens) <= max_words and not all(t in STOPWORDS for t in tokens):
        return " ".join(tokens)
    return None


def name_vocabulary(titles: Iterable[str], max_words: int = NAME_MAX_WORDS) -> set[str]:
    """The names a corpus's titles give (``title_name`` of each)."""
    names = (title_name(title, max_words) for title in titles)
    return {name for name in names if name is not None}


def mentions(text: str, names: Container[str], max_words: int = NAME_MAX_WORDS) -> list[str]:
    """The names ``text`` mentions, longest first at each position and none inside another
    ("complex regional pain syndrome", not also "pain")."""
    tokens = name_tokens(text)
    found: list[str] = []
    i = 0
    while i < len(tokens):
        for j in range(min(len(tokens), i + max_words), i, -1):
            name = " ".join(tokens[i:j])
            if name in names and not (j - i == 1 and tokens[i] in STOPWORDS):
                if name not in found:
                    found.append(name)
                i = j
                break
        else:
            i += 1
    return found


def holds_name(text_tokens: str, name: str) -> bool:
    """Does a text (space-joined ``name_tokens``) hold the name as whole words?"""
    return f" {name} " in f" {text_tokens} "


def strong_names(
    found: Sequence[str], df: Mapping[str, int], n: int, min_idf: float = 5.5
) -> dict[str, float]:
    """Of the mentioned names, those few documents hold (``idf >= min_idf``; ``df``: documents
    holding each name) -> {name: idf}: the strong lexical evidence."""
    return {
        name: idf(df[name], n) for name in found if df.get(name) and idf(df[name], n) >= min_idf
    }
