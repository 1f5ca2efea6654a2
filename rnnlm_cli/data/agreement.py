"""Long-range subject-verb agreement corpus: a small seeded grammar, generated deterministically.

Each sentence has an animate subject, then exactly `distance` intervening words, then a
present-tense verb that must agree in number with the subject's head noun, then an optional suffix:

    the old man | near the dogs that a cat chased often | goes | home
    subject     | intervening words (distance d = 7)    | verb | suffix

Distance is the number of words strictly between the subject's head noun and the agreeing verb
(`verb_index - subject_index - 1`). The intervening material is built from fragments of known
length: prepositional phrases, subject/object relative clauses, and a pre-verbal adverb. Its noun
phrases draw their number at random, so about half of them are attractors of the opposite number.
It never contains a form of any pair in `VERB_PAIRS` (relative clauses use past-tense verbs, which
do not inflect for number), so the agreeing verb is the only place number must be predicted.

Public API (stable; `rnnlm probe` builds on it): `VERB_PAIRS`, `AgreementItem`, `generate_sentence`,
`distance_weights`, `generate_corpus`, `generate_probe_set`, `covered_pairs`, `write_corpus`,
`read_probe_set`.
`rnnlm corpus agreement --out corpora/agreement` regenerates the committed files; the probe set
among them is also shipped with the package (`rnnlm_cli/data/agreement_probe.jsonl`, the default
of `rnnlm probe`).
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rnnlm_cli.errors import ConfigError, DataError, RnnlmError
from rnnlm_cli.fileio import atomic_write_text, make_folders, remove_folders
from rnnlm_cli.paths import shown

# Nouns as (singular, plural). Subjects are animate; attractors may be any noun.
PEOPLE = [("man", "men"), ("woman", "women"), ("child", "children"), ("boy", "boys"),
          ("girl", "girls"), ("teacher", "teachers"), ("doctor", "doctors"),
          ("farmer", "farmers"), ("king", "kings"), ("queen", "queens"), ("friend", "friends"),
          ("student", "students"), ("baker", "bakers"), ("sailor", "sailors"),
          ("singer", "singers"), ("neighbour", "neighbours")]
ANIMALS = [("dog", "dogs"), ("cat", "cats"), ("horse", "horses"), ("bird", "birds"),
           ("mouse", "mice"), ("fox", "foxes"), ("goose", "geese"), ("wolf", "wolves"),
           ("rabbit", "rabbits"), ("duck", "ducks")]
THINGS = [("house", "houses"), ("tree", "trees"), ("car", "cars"), ("table", "tables"),
          ("box", "boxes"), ("garden", "gardens"), ("river", "rivers"), ("hill", "hills"),
          ("door", "doors"), ("window", "windows"), ("wig", "wigs"), ("hat", "hats"),
          ("book", "books"), ("apple", "apples"), ("cake", "cakes"), ("letter", "letters"),
          ("bridge", "bridges"), ("church", "churches"), ("shop", "shops"), ("field", "fields"),
          ("road", "roads"), ("island", "islands"), ("umbrella", "umbrellas")]
ANIMATE = PEOPLE + ANIMALS
NOUNS = ANIMATE + THINGS
ADJECTIVES = ["big", "small", "old", "young", "tall", "little", "red", "green", "blue", "quiet",
              "brave", "kind", "strange", "lazy", "busy", "clever", "dark", "angry", "famous",
              "tiny"]
ADVERBS = ["often", "always", "sometimes", "usually", "rarely", "never", "certainly", "really",
           "still", "quietly"]
PREPOSITIONS = ["near", "behind", "beside", "with", "without", "under", "above", "from",
                "beyond", "across", "around"]
PAST_TRANSITIVE = ["saw", "liked", "met", "found", "followed", "chased", "watched", "helped",
                   "visited", "painted", "fed", "called", "heard", "loved", "knew", "wore",
                   "carried", "remembered"]
PAST_INTRANSITIVE = ["slept", "smiled", "laughed", "waited", "arrived", "left", "danced",
                     "stayed", "cried", "fell", "shouted", "travelled"]
SINGULAR_DETERMINERS = ["the", "the", "a", "this"]
PLURAL_DETERMINERS = ["the", "the", "some", "these", "those", "many", "two", "three"]

# Agreeing verbs as (singular, plural), each with the kind of suffix that may follow it.
VERB_PAIRS: list[tuple[str, str]] = [
    ("is", "are"), ("was", "were"), ("has", "have"), ("goes", "go"), ("sings", "sing"),
    ("runs", "run"), ("sleeps", "sleep"), ("eats", "eat"), ("walks", "walk"), ("smiles", "smile"),
    ("laughs", "laugh"), ("swims", "swim"), ("waits", "wait"), ("knows", "know"),
    ("likes", "like"), ("wants", "want"), ("plays", "play")]
_SUFFIX_KIND = {"is": "predicate", "was": "predicate", "goes": "place", "has": "object",
                "eats": "food", "knows": "object", "likes": "object", "wants": "object"}
_SUFFIXES = {
    "predicate": ["happy", "tired", "hungry", "here", "outside", "ready", "asleep", "late",
                  "at home", "in the garden"],
    "place": ["inside", "home", "away", "outside", "to the market", "to school", "to the river"],
    "manner": ["", "", "loudly", "well", "every day", "at night", "in the garden", "outside"],
    "food": ["bread", "fish", "soup", "the apples", "a cake", "the cakes", "an apple"],
}
AGREEING_FORMS = frozenset(form for pair in VERB_PAIRS for form in pair)
_MAX_TRIES = 1000


@dataclass(frozen=True)
class AgreementItem:
    """One sentence: `prefix + [verb] + suffix`, with `verb` at `distance` words after the subject.

    `prefix[subject_index]` is the subject's head noun; `wrong` is the verb of the other number.
    """

    prefix: list[str]
    verb: str
    wrong: str
    suffix: list[str]
    distance: int
    plural: bool
    subject_index: int

    @property
    def verb_index(self) -> int:
        """Position of the agreeing verb in `words` (equals `len(prefix)`)."""
        return len(self.prefix)

    @property
    def words(self) -> list[str]:
        """The full sentence as a list of words."""
        return [*self.prefix, self.verb, *self.suffix]

    @property
    def text(self) -> str:
        """The full sentence, words joined by single spaces (one corpus line)."""
        return " ".join(self.words)

    def probe_record(self) -> dict:
        """The JSON object written to `probe.jsonl` for this item."""
        return {"prefix": " ".join(self.prefix), "verb": self.verb, "wrong": self.wrong,
                "distance": self.distance, "plural": self.plural}


def _pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def _noun_phrase(rng: np.random.Generator, length: int, nouns: Sequence[tuple[str, str]],
                 plural: bool | None = None) -> list[str]:
    """A noun phrase of exactly `length` words (1..4): [determiner] adjective{0,2} noun.

    Only a bare plural fits in one word; singular phrases always take a determiner.
    """
    if plural is None:
        plural = bool(rng.random() < 0.5)
    plural = plural or length == 1
    with_det = not plural or length == 4 or (length > 1 and rng.random() < 0.7)
    adjectives: list[str] = []
    while len(adjectives) < length - 1 - with_det:
        adjective = _pick(rng, ADJECTIVES)
        if adjective not in adjectives:
            adjectives.append(adjective)
    words = [*adjectives, _pick(rng, nouns)[plural]]
    if with_det:
        det = _pick(rng, PLURAL_DETERMINERS if plural else SINGULAR_DETERMINERS)
        words.insert(0, "an" if det == "a" and words[0][0] in "aeiou" else det)
    return words


def _prepositional(rng: np.random.Generator, length: int, rel: Sequence[str]) -> list[str]:
    """`near the dogs`: 2..5 words."""
    return [_pick(rng, PREPOSITIONS), *_noun_phrase(rng, length - 1, NOUNS)]


def _subject_relative(rng: np.random.Generator, length: int, rel: Sequence[str]) -> list[str]:
    """`who often saw the old dogs`: 3..7 words."""
    adverb = length - 2 == 5 or (1 < length - 2 < 5 and rng.random() < 0.3)
    head = [_pick(rng, rel), *([_pick(rng, ADVERBS)] if adverb else []),
            _pick(rng, PAST_TRANSITIVE)]
    return head + _noun_phrase(rng, length - len(head), NOUNS)


def _object_relative(rng: np.random.Generator, length: int, rel: Sequence[str]) -> list[str]:
    """`that the dogs quietly saw`: 3..7 words."""
    adverb = length - 2 == 5 or (1 < length - 2 < 5 and rng.random() < 0.3)
    tail = [*([_pick(rng, ADVERBS)] if adverb else []), _pick(rng, PAST_TRANSITIVE)]
    return ["that", *_noun_phrase(rng, length - 1 - len(tail), ANIMATE), *tail]


def _intransitive_relative(rng: np.random.Generator, length: int, rel: Sequence[str]) -> list[str]:
    """`who never slept`: 2..3 words."""
    return [_pick(rng, rel), *([_pick(rng, ADVERBS)] if length == 3 else []),
            _pick(rng, PAST_INTRANSITIVE)]


# (builder, shortest, longest, what the previous word must be for the fragment to attach to it).
_FRAGMENTS = [(_prepositional, 2, 5, "any"), (_object_relative, 3, 7, "noun"),
              (_subject_relative, 3, 7, "animate"), (_intransitive_relative, 2, 3, "animate")]
_PERSON_FORMS = frozenset(form for pair in PEOPLE for form in pair)
_ANIMATE_FORMS = frozenset(form for pair in ANIMATE for form in pair)
_NOUN_FORMS = frozenset(form for pair in NOUNS for form in pair)


def _intervening(rng: np.random.Generator, distance: int, head: str) -> list[str]:
    """Exactly `distance` words of fragments after the noun `head`, then at most one adverb.

    A relative clause attaches only to a noun (one with an animate subject gap only to an
    animate noun); after a clause that ends in its verb, only a prepositional phrase follows.
    """
    # Reserve the pre-verbal adverb slot; what is left is 0 or >= 2 words, which fragments can fill.
    adverb = distance == 1 or (distance >= 3 and rng.random() < 0.25)
    budget = distance - adverb
    words = [head]
    # Compose fragments that fit the previous word, never leaving a remainder of exactly one word.
    while budget > 0:
        last = words[-1]
        kinds = {"any"} | ({"noun"} if last in _NOUN_FORMS else set()) | (
            {"animate"} if last in _ANIMATE_FORMS else set())
        rel = ["who", "that"] if last in _PERSON_FORMS else ["that"]
        options = [(build, [n for n in range(lo, min(hi, budget) + 1) if budget - n != 1])
                   for build, lo, hi, kind in _FRAGMENTS if kind in kinds]
        build, lengths = _pick(rng, [option for option in options if option[1]])
        length = _pick(rng, lengths)
        words += build(rng, length, rel)
        budget -= length
    return words[1:] + ([_pick(rng, ADVERBS)] if adverb else [])


def generate_sentence(rng: np.random.Generator, distance: int, plural: bool, *,
                      verb_pairs: Sequence[tuple[str, str]] | None = None) -> AgreementItem:
    """One sentence whose agreeing verb is exactly `distance` (>= 0) words after the subject noun.

    `plural` sets the subject's number; `verb_pairs` restricts the verb (default `VERB_PAIRS`).
    """
    if distance < 0:
        raise ConfigError(f"agreement distance must be >= 0, got {distance}")
    if verb_pairs is not None and not verb_pairs:
        raise ConfigError("agreement verb_pairs is empty")
    # Subject: [determiner] [adjective] animate head noun, 2..3 words.
    is_person = rng.random() < 0.6
    subject = _noun_phrase(rng, 2 + int(rng.random() < 0.3), PEOPLE if is_person else ANIMALS,
                           plural)
    # Intervening material, then the agreeing verb and a suffix that suits it.
    prefix = subject + _intervening(rng, distance, subject[-1])
    singular, plural_form = _pick(rng, VERB_PAIRS if verb_pairs is None else verb_pairs)
    kind = _SUFFIX_KIND.get(singular, "manner")
    if kind == "object":
        suffix = _noun_phrase(rng, 1 + int(rng.integers(3)), THINGS + ANIMALS)
    else:
        suffix = _pick(rng, _SUFFIXES[kind]).split()
    verb, wrong = (plural_form, singular) if plural else (singular, plural_form)
    return AgreementItem(prefix=prefix, verb=verb, wrong=wrong, suffix=suffix, distance=distance,
                         plural=bool(plural), subject_index=len(subject) - 1)


def distance_weights(max_distance: int, uniform_share: float = 0.15,
                     short_mean: float = 1.5) -> np.ndarray:
    """Probabilities of d = 0..max_distance used by `generate_corpus`.

    A mixture: with probability `uniform_share`, d is uniform over 0..max_distance; otherwise it
    is geometric with mean `short_mean` (P(d) proportional to q**d, q = m/(m+1)), truncated.
    """
    q = short_mean / (short_mean + 1.0)
    geometric = q ** np.arange(max_distance + 1)  # (max_distance + 1,)
    return uniform_share / (max_distance + 1) + (1.0 - uniform_share) * geometric / geometric.sum()


def generate_corpus(seed: int, n_train: int, n_valid: int, n_test: int, max_distance: int, *,
                    uniform_share: float = 0.15,
                    short_mean: float = 1.5) -> dict[str, list[AgreementItem]]:
    """Sentences for the `train`, `valid` and `test` splits, from one generator seeded by `seed`.

    Each sentence draws its distance from `distance_weights(...)` and its number 50/50.
    """
    if seed < 0 or max_distance < 0 or min(n_train, n_valid, n_test) < 0:
        raise ConfigError("agreement seed, corpus sizes and max_distance must be >= 0")
    rng = np.random.default_rng([seed, 0])
    cdf = list(np.cumsum(distance_weights(max_distance, uniform_share, short_mean)))
    splits: dict[str, list[AgreementItem]] = {}
    for name, count in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        items = []
        for _ in range(count):
            distance = min(bisect.bisect_right(cdf, rng.random() * cdf[-1]), max_distance)
            items.append(generate_sentence(rng, distance, bool(rng.random() < 0.5)))
        splits[name] = items
    return splits


def generate_probe_set(seed: int, per_distance: int, distances: range, exclude: set[str], *,
                       verb_pairs: Sequence[tuple[str, str]] | None = None) -> list[AgreementItem]:
    """`per_distance` items for each distance, alternating singular/plural (balanced when even).

    No item's text is in `exclude` (pass the training sentences) or repeats another probe item;
    a colliding sentence is regenerated. Pass the pairs the training split covers as `verb_pairs`.
    """
    if seed < 0 or per_distance < 0:
        raise ConfigError("agreement probe seed and per_distance must be >= 0")
    rng = np.random.default_rng([seed, 1])
    seen = set(exclude)
    items: list[AgreementItem] = []
    for distance in distances:
        for i in range(per_distance):
            for _ in range(_MAX_TRIES):
                item = generate_sentence(rng, distance, plural=i % 2 == 1, verb_pairs=verb_pairs)
                if item.text not in seen:
                    break
            else:
                raise RnnlmError(f"cannot find {per_distance} new probe sentences at distance "
                                 f"{distance}; lower per_distance")
            seen.add(item.text)
            items.append(item)
    return items


def covered_pairs(items: Sequence[AgreementItem]) -> list[tuple[str, str]]:
    """The pairs of `VERB_PAIRS` whose singular and plural forms both occur as verbs in `items`."""
    used = {item.verb for item in items}
    return [pair for pair in VERB_PAIRS if pair[0] in used and pair[1] in used]


CORPUS_FILES = {"train": "train.txt", "valid": "valid.txt", "test": "test.txt", "probe": "probe.jsonl"}


def write_corpus(out_dir: str | Path, seed: int = 1, n_train: int = 4000, n_valid: int = 400,
                 n_test: int = 400, max_distance: int = 30, probe_per_distance: int = 30,
                 probe_distances: range = range(1, 31)) -> dict[str, Path]:
    """Write train/valid/test.txt and probe.jsonl under `out_dir`; same arguments, same bytes.

    Returns the written paths by name (`train`, `valid`, `test`, `probe`).
    """
    # Generate the splits, then a probe set disjoint from training and limited to its verbs.
    splits = generate_corpus(seed, n_train, n_valid, n_test, max_distance)
    probe = generate_probe_set(seed, probe_per_distance, probe_distances,
                               exclude={item.text for item in splits["train"]},
                               verb_pairs=covered_pairs(splits["train"]))
    # Write one sentence (or one JSON object) per line, UTF-8, "\n" line ends.
    out = Path(out_dir)
    lines = {name: [item.text for item in items] for name, items in splits.items()}
    lines["probe"] = [json.dumps(item.probe_record(), separators=(",", ":")) for item in probe]
    paths = {name: out / file_name for name, file_name in CORPUS_FILES.items()}
    created, written = [], []
    try:
        created = make_folders(out)
        for name, rows in lines.items():
            existed = paths[name].exists()
            atomic_write_text(paths[name], "".join(row + "\n" for row in rows))
            if not existed:
                written.append(paths[name])
    except BaseException as exc:      # whole or not at all: remove what this call created
        for path in written:
            path.unlink(missing_ok=True)
        remove_folders(created)
        if isinstance(exc, OSError):
            raise DataError(f"cannot write the agreement corpus to {shown(out)}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None
        raise
    return paths


PROBE_FIELDS = ("prefix", "verb", "wrong", "distance", "plural")


def _shown(value, limit: int = 40) -> str:
    """A value as a short repr for a message (a crafted line can be megabytes long)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _probe_item(record, where: str) -> AgreementItem:
    """One probe record, checked field by field (DataError naming `where`, the file and line)."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object with {', '.join(PROBE_FIELDS)}, got {_shown(record)}")
    missing = [k for k in PROBE_FIELDS if k not in record]
    if missing:
        raise DataError(f"{where}: missing field{'s' * (len(missing) > 1)} {', '.join(missing)}")
    extra = [str(k) for k in record if k not in PROBE_FIELDS]
    if extra:
        names = ", ".join(extra)
        raise DataError(f"{where}: unknown field{'s' * (len(extra) > 1)} "
                        f"{names if len(names) <= 40 else names[:37] + '...'}")
    prefix, verb, wrong = record["prefix"], record["verb"], record["wrong"]
    distance, plural = record["distance"], record["plural"]
    if not isinstance(prefix, str) or not prefix.split():
        raise DataError(f"{where}: prefix is {_shown(prefix)}, expected the words before the verb (non-empty text)")
    for name, form in (("verb", verb), ("wrong", wrong)):
        if not isinstance(form, str) or len(form.split()) != 1 or form != form.strip():
            raise DataError(f"{where}: {name} is {_shown(form)}, expected one word")
    if verb == wrong:
        raise DataError(f"{where}: verb and wrong are both {_shown(verb)}: the item cannot tell right from wrong")
    if not isinstance(distance, int) or isinstance(distance, bool) or distance < 1:
        raise DataError(f"{where}: distance is {_shown(distance)}, expected an integer >= 1 (the words between "
                        f"the subject and the verb)")
    if not isinstance(plural, bool):
        raise DataError(f"{where}: plural is {_shown(plural)}, expected true or false")
    words = prefix.split()
    if distance >= len(words):
        raise DataError(f"{where}: distance {distance} exceeds the prefix ({len(words)} words: the subject would "
                        f"lie before it)")
    return AgreementItem(prefix=words, verb=verb, wrong=wrong, suffix=[], distance=distance, plural=plural,
                         subject_index=len(words) - distance - 1)


def read_probe_set(path: str | Path) -> list[AgreementItem]:
    """Read `probe.jsonl` back into items (suffix is not stored, so it comes back empty).

    One JSON object per line with exactly the fields prefix (text), verb and wrong (one word
    each, different), distance (an integer >= 1, below the number of prefix words) and plural
    (true/false); blank lines are skipped. The file is text by corpus.check_text's rule. Every
    mistake is a DataError naming the file and line.
    """
    from rnnlm_cli.data.corpus import read_text

    text = read_text(str(path), label="probe", hint=False)
    items = []
    lines = text.split("\n")                          # not splitlines(): U+2028 may stand inside a JSON string
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line + "\n" * (number < len(lines)))
        except (ValueError, RecursionError) as exc:
            detail = str(exc) if len(str(exc)) <= 80 else str(exc)[:77] + "..."
            raise DataError(f"{where}: malformed probe record ({detail})") from None
        items.append(_probe_item(record, where))
    return items
