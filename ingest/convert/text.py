"""Instruction text cleanup: one imperative, lower-case, code-free sentence per episode.

Used by every source for `caption` (the original stays in `task_original`) and by the template
captioner (`ingest/captions/`). Rules, in order:
1. quotes and whitespace normalised (a backtick apostrophe becomes `'`), snake_case / kebab-case
   names turned into words, leading list markers (`- `, `* `, `1. `) removed;
2. annotator codes removed: Ego4D's `#C C ` (camera wearer as subject), `#O <person>`, `#unsure`,
   trailing `#` tags; a text that is only a placeholder (`Unspecified`, `OTHER`, `None`, `N/A`)
   cleans to "";
3. EgoDex's scene clause (`... while sitting against a blue background`) removed;
4. EPIC's continuation words dropped before a verb (`still cutting potato`, `continue chopping
   onion`, `keep stirring oatmeal`);
5. the first word, when it is a known verb, put in the imperative: third person (`Kneads` ->
   `knead`, `#C C carries` -> `carry`) and gerund (`rolling` -> `roll`, `taking` -> `take`);
6. the first word lower-cased (unless it is an acronym; a sentence all in capitals is lower-cased),
   trailing full stop removed.
Applying it twice gives the same text as applying it once.
"""

from __future__ import annotations

import re

_SUBJECT = re.compile(r"^#c\s+c\s+", re.IGNORECASE)  # "#C C picks ..." : camera wearer is the subject
_CODE = re.compile(r"#\s*(unsure|summary|o|c)\b", re.IGNORECASE)
_TAG = re.compile(r"#\S*")
_LIST_MARKER = re.compile(r"^(?:[-*\u2022]+|\d+[.)])\s+")
_SCENE = re.compile(r",?\s+while (?:sitting|standing|seated)\b.*$", re.IGNORECASE)
_CONTINUATION = {"still", "continue", "continues", "continuing", "keep", "keeps"}
_PLACEHOLDERS = {"unspecified", "other", "none", "null", "n/a", "na", "unknown", "-"}
_QUOTES = str.maketrans({"`": "'", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_IRREGULAR = {"has": "have", "is": "be", "does": "do", "goes": "go"}

# Base forms of the verbs that start instructions in the robot and egocentric sources (EgoDex, Bridge,
# Ego4D Goal-Step, EPIC-KITCHENS). Only a first word whose base form is listed is conjugated, so that a
# noun-first text ("glasses on the shelf", "Sun bakes the dough") is left alone.
_VERB_WORDS = """
    activate add adjust align apply arrange assemble attach bake balance baste beat bend blanch blend
    boil braise break brew bring brush buckle build burn button carry catch change charge check chew
    chop clean clear close coat collect combine compress connect cook cool cover crack crush cut
    deactivate declutter decorate decrease defrost deliver detach dice dilute dip discard dish dispose
    dissolve divide do drag drain draw dress drink drizzle drop dry dump dust eat empty enter examine
    extract fasten feed fetch fill find fit fix flatten flip fold fry garnish gather get give grab grate
    grease grill grind hang heat hold hook ignite immerse increase insert inspect iron knead kneel knock
    lather lay leave lift light load look loosen lower lubricate make marinate mash massage measure melt
    microwave mince mix mold mop mould move open operate organise organize pack pass paste pat peel pick
    pinch pipe place play plug point pound pour preheat prepare press proof pull pump push put raise
    rearrange record reduce refill refrigerate regulate rekindle release remove replace reposition rest
    return rinse roast roll rotate rub run sample saute scoop score scrape scratch scrub seal search
    season select separate serve set shake shape shred shut sieve sift simmer slash slice slide smear
    smooth soak sort spin splash split spoon spray spread sprinkle squeeze squish stack stand start
    steam stir store strain stretch stuff sweep swing swirl switch take tap taste tear thaw thin throw
    tidy tie tighten toast toss touch transfer trash turn twist unfold unhook unlock unpack unplug
    unroll unscrew unseal untie unwrap unzip use wait walk warm wash watch wear weigh wet whisk wipe
    wrap wring write zip
"""
VERBS = frozenset(_VERB_WORDS.split())


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


def gerund_base(word: str) -> str | None:
    """`rolling` -> `roll`, `taking` -> `take`, `chopping` -> `chop`; None unless a known verb."""
    low = word.lower()
    if not low.endswith("ing") or low in VERBS:
        return None
    stem = low[:-3]
    candidates = [stem, stem + "e"]
    if len(stem) > 2 and stem[-1] == stem[-2]:
        candidates.append(stem[:-1])
    return next((c for c in candidates if c in VERBS), None)


def _base_verb(word: str, third_person: bool) -> str | None:
    """The imperative of a first word that is a conjugated form of a known verb, else None."""
    if third_person:
        return imperative(word).lower()
    base = imperative(word).lower()
    if base != word.lower() and base in VERBS:
        return base
    return gerund_base(word)


def _drop_continuation(text: str) -> str:
    """`still cutting potato` -> `cutting potato`: only when a verb follows."""
    first, _, rest = text.partition(" ")
    nxt = rest.partition(" ")[0]
    verb_next = gerund_base(nxt) is not None or (first.lower() == "still" and nxt.lower() in VERBS)
    return rest if first.lower() in _CONTINUATION and verb_next else text


def _lower_first(text: str) -> str:
    if text.isupper() and " " in text:  # a sentence in capitals, not an acronym
        return text.lower()
    first, _, rest = text.partition(" ")
    if first.isupper() and len(first) > 1:  # an acronym such as "USB"
        return text
    return f"{first[:1].lower()}{first[1:]} {rest}".strip()


def _normalise(text: str) -> str:
    text = re.sub(r"\s+", " ", text.translate(_QUOTES)).strip()
    if not re.search(r"\s", text) and re.search(r"[_-]", text):
        text = re.sub(r"[_-]+", " ", text).strip()
    return _LIST_MARKER.sub("", text)


LATIN_SHARE = 0.9  # a text is English-like when this share of its letters is ASCII


def is_latin(text: str) -> bool:
    """Most of the text's letters are ASCII (an English instruction, not 超市打包); False without letters."""
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isascii() for c in letters) >= LATIN_SHARE * len(letters)


def prefer_english(texts: list[str]) -> str:
    """The first text that cleans to an English-like instruction, else the first that cleans to anything
    (a source that has only, say, Chinese keeps it), else "". Applied to (task_original, caption)."""
    cleaned = [c for c in (clean_instruction(t) for t in texts) if c]
    return next((c for c in cleaned if is_latin(c)), cleaned[0] if cleaned else "")


def clean_instruction(text: str) -> str:
    """The cleaned instruction; "" when nothing is left (the caller decides what that means)."""
    text = _normalise(text)
    third_person = bool(_SUBJECT.match(text))
    text = _SUBJECT.sub("", text)
    text = _TAG.sub(" ", _CODE.sub(" ", text))
    text = _SCENE.sub("", re.sub(r"\s+", " ", text)).strip(" .,;:!")
    if text.lower() in _PLACEHOLDERS:
        return ""
    text = _drop_continuation(text)
    first, _, rest = text.partition(" ")
    base = _base_verb(first, third_person) if first else None
    if base is not None:
        text = f"{base} {rest}".strip()
    return _lower_first(text)
