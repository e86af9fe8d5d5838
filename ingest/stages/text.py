"""Instruction text cleanup: one imperative, lower-case, code-free sentence per episode.

Used by every source for `caption` (the original stays in `task_original`) and by the template
captioner. Rules, in order:
1. whitespace collapsed, snake_case / kebab-case names turned into words;
2. annotator codes removed: Ego4D's `#C C ` (camera wearer as subject), `#O <person>`, `#unsure`,
   trailing `#` tags;
3. when the narration had the camera wearer as subject (`#C C picks ...`), its first verb goes from
   the third person to the imperative (`picks` -> `pick`, `washes` -> `wash`, `carries` -> `carry`);
4. the first word lower-cased (unless it is an acronym), trailing full stop removed.
"""

from __future__ import annotations

import re

_SUBJECT = re.compile(r"^#c\s+c\s+", re.IGNORECASE)  # "#C C picks ..." : camera wearer is the subject
_CODE = re.compile(r"#\s*(unsure|summary|o|c)\b", re.IGNORECASE)
_TAG = re.compile(r"#\S*")
_IRREGULAR = {"has": "have", "is": "be", "does": "do", "goes": "go"}


def imperative(verb: str) -> str:
    """Third-person singular -> base form for a regular English verb (`picks` -> `pick`)."""
    low = verb.lower()
    if low in _IRREGULAR:
        return _IRREGULAR[low]
    if low.endswith("ies") and len(low) > 4:
        return verb[:-3] + "y"
    if low.endswith(("sses", "shes", "ches", "xes", "zzes", "oes")):
        return verb[:-2]
    if low.endswith(("ss", "us", "is")) or not low.endswith("s"):
        return verb
    return verb[:-1]


def _lower_first(text: str) -> str:
    first, _, rest = text.partition(" ")
    if first.isupper() and len(first) > 1:  # an acronym such as "USB"
        return text
    return f"{first[:1].lower()}{first[1:]} {rest}".strip()


def clean_instruction(text: str) -> str:
    """The cleaned instruction; "" when nothing is left (the caller decides what that means)."""
    text = re.sub(r"\s+", " ", text).strip()
    if not re.search(r"\s", text) and re.search(r"[_-]", text):
        text = re.sub(r"[_-]+", " ", text)
    third_person = bool(_SUBJECT.match(text))
    text = _SUBJECT.sub("", text)
    text = _TAG.sub(" ", _CODE.sub(" ", text))
    text = re.sub(r"\s+", " ", text).strip(" .,;:")
    if not text:
        return ""
    if third_person:
        first, _, rest = text.partition(" ")
        text = f"{imperative(first)} {rest}".strip()
    return _lower_first(text)
