"""Corpora the project generates itself, with fixed seeds, for tests that check learning.

- `markov_corpus`: characters from a k-th order Markov source whose exact entropy rate (nats per
  character) is computed, the floor a perfect model reaches.
- `agreement_corpus`: word lines where the subject's number ("the cat" / "the cats") decides the verb
  ("was" / "were") many words later, the notes' long-range dependency, where gated cells beat the
  vanilla RNN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MARKOV_ALPHABET = "abcdefgh \n"


@dataclass
class MarkovSource:
    alphabet: str
    order: int
    probs: np.ndarray  # (A**order, A): next-character distribution for each context

    def entropy_rate(self) -> float:
        """Exact entropy rate in nats per character: sum over contexts of pi(ctx) * H(P(. | ctx))."""
        A, k = len(self.alphabet), self.order
        S = A**k
        # Context chain: ctx = (c1..ck) -> (c2..ck, next) with probability probs[ctx, next].
        P = np.zeros((S, S))
        for ctx in range(S):
            shifted = (ctx * A) % S
            P[ctx, shifted : shifted + A] = self.probs[ctx]
        pi = np.full(S, 1.0 / S)
        for _ in range(10_000):
            new = pi @ P
            if np.abs(new - pi).max() < 1e-15:
                break
            pi = new
        p = self.probs
        h = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
        return float(pi @ h)


def markov_source(order: int = 2, seed: int = 1234, concentration: float = 0.3) -> MarkovSource:
    rng = np.random.default_rng(seed)
    A = len(MARKOV_ALPHABET)
    probs = rng.dirichlet(np.full(A, concentration), size=A**order)
    return MarkovSource(MARKOV_ALPHABET, order, probs)


def markov_corpus(n_chars: int = 300_000, order: int = 2, seed: int = 1234) -> tuple[str, float]:
    """(text, entropy rate in nats/char) of a sample from `markov_source(order, seed)`."""
    source = markov_source(order, seed)
    rng = np.random.default_rng(seed + 1)
    A = len(source.alphabet)
    S = A**order
    cum = np.cumsum(source.probs, axis=1)
    u = rng.random(n_chars)
    ctx = 0
    out = np.empty(n_chars, dtype=np.int64)
    for t in range(n_chars):
        c = min(int(np.searchsorted(cum[ctx], u[t], side="right")), A - 1)
        out[t] = c
        ctx = (ctx * A + c) % S
    text = "".join(np.array(list(source.alphabet))[out])
    return text, source.entropy_rate()


SUBJECTS = {"cat": "cats", "dog": "dogs", "bird": "birds", "child": "children"}
FILLER = ("which", "that", "we", "saw", "near", "the", "old", "red", "house", "by", "river", "after",
          "long", "quiet", "day", "in", "small", "green", "garden", "yesterday")


def agreement_corpus(n_lines: int = 3000, min_gap: int = 8, max_gap: int = 14, seed: int = 99) -> str:
    """Lines `the <subject> , <gap filler words> , was|were <adjective> .`: the verb agrees with
    the subject's number across `min_gap`..`max_gap` filler words."""
    rng = np.random.default_rng(seed)
    singular = list(SUBJECTS)
    lines = []
    for _ in range(n_lines):
        noun = singular[rng.integers(len(singular))]
        plural = bool(rng.integers(2))
        subject = SUBJECTS[noun] if plural else noun
        gap = [FILLER[i] for i in rng.integers(len(FILLER), size=rng.integers(min_gap, max_gap + 1))]
        verb = "were" if plural else "was"
        adjective = ("full", "hungry", "happy", "tired")[rng.integers(4)]
        lines.append(" ".join(["the", subject, ",", *gap, ",", verb, adjective, "."]))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The demo corpus: short English sentences about a kitchen, a garden and a market, written for
# rnncli from the templates below (our own words), so `make demo` has something pleasant to learn.

_DEMO_PARTS = {
    "fruit": ["apple", "pear", "plum", "cherry", "orange", "lemon", "peach", "fig", "grape", "melon"],
    "dish": ["salad", "tart", "pie", "jam", "soup", "cake", "crumble", "juice"],
    "person": ["my sister", "the baker", "our neighbour", "the old man", "a little girl", "the cook",
               "my brother", "the farmer", "the teacher", "a tall woman"],
    "place": ["the market", "the garden", "the kitchen", "the orchard", "the village", "the shop",
              "the river bank", "the hill"],
    "time": ["in the morning", "on sunday", "after lunch", "before dinner", "at dawn", "every evening",
             "in the spring", "last summer"],
    "verb": ["made", "bought", "carried", "shared", "found", "picked", "cut", "sold"],
    "adj": ["sweet", "fresh", "ripe", "green", "golden", "small", "warm", "sour"],
    "weather": ["the sun was bright", "rain fell on the roof", "the wind was cold", "the sky was grey",
                "snow covered the hill", "the air was warm"],
}
_DEMO_TEMPLATES = [
    "{person} {verb} a {adj} {fruit} {time}.",
    "we ate the {fruit} and {fruit2} {dish} in {place}.",
    "{person} {verb} the {fruit} {dish} at {place}.",
    "the {fruit} and {fruit2} {dish} was {adj}.",
    "{time}, {weather} and {person} walked to {place}.",
    "there is a {adj} {fruit} on the table in {place}.",
    "{person} said that the {fruit} {dish} tasted {adj}.",
    "{weather}, so we stayed in {place} {time}.",
    "do you like the {adj} {fruit} {dish} that {person} {verb}?",
    "{person} and {person2} {verb} {adj} {fruits} {time}.",
]


def _plural(noun: str) -> str:
    if noun.endswith("y"):
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("ch", "sh", "s")) else "s")


def demo_corpus(n_lines: int = 600, seed: int = 7) -> str:
    rng = np.random.default_rng(seed)
    pick = lambda key: _DEMO_PARTS[key][rng.integers(len(_DEMO_PARTS[key]))]  # noqa: E731
    lines = []
    for _ in range(n_lines):
        template = _DEMO_TEMPLATES[rng.integers(len(_DEMO_TEMPLATES))]
        words = {k: pick(k) for k in _DEMO_PARTS}
        words["fruit2"] = pick("fruit")
        words["person2"] = pick("person")
        words["fruits"] = _plural(pick("fruit"))
        line = template.format(**words)
        lines.append(line[0].upper() + line[1:])
    return "\n".join(lines) + "\n"



# ---- the task corpora: each built so that the network's shape matters --------------------------------

_GOOD = ["likeable", "charming", "moving", "funny", "clever", "beautiful", "gripping", "warm"]
_BAD = ["dull", "clumsy", "boring", "tedious", "lifeless", "silly", "messy", "flat"]
_THINGS = ["movie", "film", "story", "script", "cast", "ending", "plot", "soundtrack"]
_SENTIMENT = {  # the same words on both sides: only their order and the negation decide
    "pos": ["there is nothing but {good} work in this {thing}", "there is nothing to dislike in this {thing}",
            "the {thing} is not {bad} at all", "i could not stop smiling at this {thing}",
            "not a single {bad} moment in the {thing}", "the {thing} is {good} , never {bad}",
            "i expected a {bad} {thing} but it is {good}", "nothing about the {thing} felt {bad}"],
    "neg": ["there is nothing to like in this {thing}", "there is nothing but {bad} work in this {thing}",
            "the {thing} is not {good} at all", "i could not stop yawning at this {thing}",
            "not a single {good} moment in the {thing}", "the {thing} is {bad} , never {good}",
            "i expected a {good} {thing} but it is {bad}", "nothing about the {thing} felt {good}"],
}


def sentiment_corpus(n_lines: int = 3000, seed: int = 11) -> str:
    """`label<TAB>text` lines (with a header) where the label turns on negation and order: "there is
    nothing to like" (neg) against "nothing to dislike" (pos), "not good" against "not bad"."""
    rng = np.random.default_rng(seed)
    lines = ["label\ttext"]
    for _ in range(n_lines):
        label = "pos" if rng.random() < 0.5 else "neg"
        templates = _SENTIMENT[label]
        text = templates[rng.integers(len(templates))].format(
            good=_GOOD[rng.integers(len(_GOOD))], bad=_BAD[rng.integers(len(_BAD))],
            thing=_THINGS[rng.integers(len(_THINGS))])
        lines.append(f"{label}\t{text}")
    return "\n".join(lines) + "\n"


# First names that are also ordinary words: the tag of the first word depends on the word after it.
_AMBIGUOUS = {"Teddy": ["bears are on sale", "bears sleep on the shelf"], "Rose": ["bushes grow in the garden",
              "petals fell on the table"], "Bill": ["payments are due on Monday", "collectors called again"],
              "Grace": ["periods end on Friday", "notes are played softly"], "Mark": ["sheets are on the desk",
              "downs start next week"], "Jack": ["fruit is sweet and heavy", "rabbits run across the field"],
              "Victoria": ["sponge is served with tea", "plums are ripe in August"],
              "Paris": ["hats are in fashion", "green was a paint colour"]}
_SURNAMES = ["Roosevelt", "Potter", "Granger", "Kelly", "Smith", "Brown", "Taylor", "Lopez"]
_PLACES = ["London", "Berlin", "Lisbon", "Oslo", "Madrid", "Vienna"]
_ORGS = [["the", "United", "Nations"], ["Acme", "Corporation"], ["the", "Red", "Cross"], ["Reuters"]]
_PERSON_TAILS = [["was", "a", "great", "President"], ["met", "{per2}", "in", "{loc}"],
                 ["works", "for", "{org}", "in", "{loc}"], ["visited", "{loc}", "last", "year"]]


def _person(rng, first: str | None = None) -> list[tuple[str, str]]:
    first = first or list(_AMBIGUOUS)[rng.integers(len(_AMBIGUOUS))]
    return [(first, "B-PER"), (_SURNAMES[rng.integers(len(_SURNAMES))], "I-PER")]


def ner_corpus(n_sentences: int = 2000, seed: int = 13) -> str:
    """CoNLL lines `token TAG` (IOB2: B-PER, I-PER, B-LOC, B-ORG, I-ORG, O), a blank line between
    sentences. Half the sentences open with a first name used as a person ("Teddy Roosevelt was a
    great President": B-PER) and half with the same word as an ordinary one ("Teddy bears are on
    sale": O): only the next word tells, so looking ahead (--bidirectional) matters."""
    rng = np.random.default_rng(seed)
    out = ["-DOCSTART- O", ""]
    for _ in range(n_sentences):
        first = list(_AMBIGUOUS)[rng.integers(len(_AMBIGUOUS))]
        if rng.random() < 0.5:
            tails = _AMBIGUOUS[first]
            words = [(first, "O")] + [(w, "O") for w in tails[rng.integers(len(tails))].split()]
        else:
            words = _person(rng, first)
            for w in _PERSON_TAILS[rng.integers(len(_PERSON_TAILS))]:
                if w == "{per2}":
                    words += _person(rng)
                elif w == "{loc}":
                    words.append((_PLACES[rng.integers(len(_PLACES))], "B-LOC"))
                elif w == "{org}":
                    org = _ORGS[rng.integers(len(_ORGS))]
                    words += [(t, "O" if t == "the" else ("B-ORG" if i == 0 or org[0] == "the" and i == 1
                                                          else "I-ORG")) for i, t in enumerate(org)]
                else:
                    words.append((w, "O"))
        words.append((".", "O"))
        out += [f"{w} {t}" for w, t in words] + [""]
    return "\n".join(out)


_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def dates_corpus(n_pairs: int = 6000, seed: int = 17) -> str:
    """`human date<TAB>ISO date` lines: "the 3rd of March 2021" -> "2021-03-03", in eight spellings.
    Source and target differ in length and order (the day moves to the end): an encoder–decoder task."""
    import datetime

    rng = np.random.default_rng(seed)
    start = datetime.date(1950, 1, 1).toordinal()
    spellings = ["the {o} of {M} {Y}", "{M} {d}, {Y}", "{d} {M} {Y}", "{W}, {M} {o} {Y}", "{o} {M} {Y}",
                 "{m}/{d}/{Y}", "{W} the {o} of {M}, {Y}", "{M} {o}, {Y}"]
    lines = []
    for _ in range(n_pairs):
        day = datetime.date.fromordinal(start + int(rng.integers(0, 365 * 80)))
        spelling = spellings[rng.integers(len(spellings))]
        human = spelling.format(o=_ordinal(day.day), M=_MONTHS[day.month - 1], Y=day.year, d=day.day,
                                m=day.month, W=day.strftime("%A"))
        if rng.random() < 0.3:
            human = human.lower()
        lines.append(f"{human}\t{day.isoformat()}")
    return "\n".join(lines) + "\n"


# The demo corpus as a folder of compressed files (the README trains on a folder): its lines in
# three consecutive parts, gzip, bzip2 and xz, read back in sorted order as demo.txt itself.
DEMO_PARTS = ("part-1.txt.gz", "part-2.txt.bz2", "part-3.txt.xz")


def demo_parts() -> dict[str, bytes]:
    import bz2
    import gzip
    import lzma

    lines = demo_corpus().splitlines(keepends=True)
    third = -(-len(lines) // 3)
    packers = (lambda b: gzip.compress(b, mtime=0), bz2.compress, lzma.compress)
    return {name: pack("".join(lines[i * third:(i + 1) * third]).encode("utf-8"))
            for i, (name, pack) in enumerate(zip(DEMO_PARTS, packers, strict=True))}
