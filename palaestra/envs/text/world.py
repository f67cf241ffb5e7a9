"""A seeded generator of fictional worlds: entities, one document per entity, and multi-hop questions.

The idea is ReSeek's FictionalHot benchmark ("ReSeek: A Self-Correcting Framework for Search Agents with
Instructive Rewards"): questions about invented entities cannot be answered from a pretrained model's memory,
so an agent that scores well must have searched. Names are built from syllable tables; several entities
share name parts (persons share first and last names, organisations borrow surnames, cities come with
"Port"/"New" variants) so that a vague query retrieves near-duplicates, as in HotpotQA's distractor setting.

Questions follow the HotpotQA / 2WikiMultihopQA / MuSiQue recipes: 1-hop lookups, bridge chains of 2 and
3 hops in which the bridge entities are never named ("In which country is the city where the founder of
Velmora Labs was born?"), and 2-hop numeric comparisons ("How many years apart were X and Y born?").
Each question carries its answers (with aliases), its gold document ids in hop order and the oracle's
search queries (the name of the entity each hop must look up).

Everything is a pure function of :class:`WorldConfig`; :func:`build_world` caches one world per config.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from palaestra.envs.text.rewards import contains_answer

__all__ = ["SPLITS", "Document", "Entity", "Question", "World", "WorldConfig", "build_world"]

SPLITS = ("train", "dev", "test", "hot")
_T = TypeVar("_T")
_HOT_SEED_OFFSET = 1_000_003  # the hot world's seed is config.seed + this (a fixed, documented derivation)

# --- Vocabulary: shared by every world, so the hot world has the same look as the training world --------------
_ONSETS = ("b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "th", "tr", "qu")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ia", "ou", "ei")
_CODAS = ("", "", "", "n", "r", "s", "l", "th", "m", "x", "sk")
_CITY_PREFIXES = ("Port", "New", "Upper", "Lower", "East", "West", "Fort")
_COUNTRY_ENDINGS = ("ia", "and", "or", "ea", "istan", "mark")
_ORG_KINDS = ("Labs", "Institute", "Guild", "Foundry", "Society", "Collective", "Works", "Academy", "Press", "Trust")
_WORK_ADJECTIVES = (
    "Silent", "Hollow", "Amber", "Crimson", "Distant", "Gilded", "Broken", "Quiet", "Burning", "Frozen",
    "Hidden", "Restless", "Pale", "Iron", "Velvet", "Shifting", "Last", "Northern", "Drowned", "Sleeping",
)  # fmt: skip
_WORK_NOUNS = (
    "Lantern", "Harbor", "Orchard", "Cartographer", "Meridian", "Atlas", "Tide", "Archive", "Garden", "Compass",
    "Lighthouse", "Bridge", "Chorus", "Ledger", "Furnace", "Observatory", "Ferry", "Almanac", "Glacier", "Mill",
)  # fmt: skip
_OCCUPATIONS = ("chemist", "painter", "engineer", "botanist", "cartographer", "composer", "historian", "architect",
                "astronomer", "physician", "novelist", "mathematician", "sculptor", "linguist", "geologist")  # fmt: skip
_ORG_DESCRIPTIONS = ("a research organisation", "a trading company", "a learned society", "a publishing house",
                     "an engineering firm", "a charitable trust", "a workshop", "a school")  # fmt: skip
_WORK_DESCRIPTIONS = ("a novel", "a treatise", "an atlas", "a symphony", "a collection of poems", "a play", "a memoir")
# Words whose first letter misleads about the sound that picks "a" or "an": a vowel letter read as a consonant
# ("a university", "a one-act play") and a silent h ("an hour").
_CONSONANT_SOUND_PREFIXES = ("uni", "use", "usu", "uti", "eu", "ewe", "one", "once")
_VOWEL_SOUND_PREFIXES = ("hour", "honest", "honour", "honor", "heir")


def _with_article(noun: str) -> str:
    """``noun`` preceded by "a" or "an", chosen by its first sound: "an architect", "a historian", "a university"."""
    word = noun.lower()
    if word.startswith(_VOWEL_SOUND_PREFIXES):
        vowel_sound = True
    elif word.startswith(_CONSONANT_SOUND_PREFIXES):
        vowel_sound = False
    else:
        vowel_sound = word[:1] in ("a", "e", "i", "o", "u")
    return f"{'an' if vowel_sound else 'a'} {noun}"


@dataclass(frozen=True)
class _Relation:
    """A functional relation: its subject kind, its value kind (an entity kind or ``"year"``) and its wordings."""

    name: str
    source: str
    target: str
    phrase: str  # noun phrase naming the value, "{x}" is the subject ("the mentor of {x}")
    question: str  # question asking for the value ("Who was the mentor of {x}?")
    sentences: tuple[str, ...]  # paraphrase templates stating the fact, "{s}" subject, "{o}" value


_RELATIONS = (
    _Relation("born_in", "person", "city", "the city where {x} was born", "In which city was {x} born?",
              ("{s} was born in {o}.", "{s} is a native of {o}.", "The birthplace of {s} is {o}.")),
    _Relation("works_for", "person", "organisation", "the organisation that {x} works for",
              "Which organisation does {x} work for?",
              ("{s} works for {o}.", "{s} is employed by {o}.", "{s} holds a position at {o}.")),
    _Relation("mentor", "person", "person", "the mentor of {x}", "Who was the mentor of {x}?",
              ("{s} was mentored by {o}.", "{s} trained under {o}.", "The mentor of {s} was {o}.")),
    _Relation("birth_year", "person", "year", "", "In what year was {x} born?",
              ("{s} was born in the year {o}.", "{s} came into the world in {o}.", "The birth year of {s} is {o}.")),
    _Relation("founder", "organisation", "person", "the founder of {x}", "Who founded {x}?",
              ("{s} was founded by {o}.", "{o} founded {s}.", "The founder of {s} is {o}.")),
    _Relation("based_in", "organisation", "city", "the city where {x} is based", "In which city is {x} based?",
              ("{s} is based in {o}.", "{s} has its headquarters in {o}.", "The headquarters of {s} are in {o}.")),
    _Relation("founded_year", "organisation", "year", "", "In what year was {x} founded?",
              ("{s} was established in {o}.", "{s} dates from {o}.", "The founding year of {s} is {o}.")),
    _Relation("country", "city", "country", "the country of {x}", "In which country is {x}?",
              ("{s} is a city in {o}.", "{s} lies in {o}.", "{s} belongs to {o}.")),
    _Relation("capital", "country", "city", "the capital of {x}", "What is the capital of {x}?",
              ("The capital of {s} is {o}.", "{o} is the capital of {s}.", "{s} is governed from {o}.")),
    _Relation("author", "work", "person", "the author of {x}", "Who wrote {x}?",
              ("{s} was written by {o}.", "{o} wrote {s}.", "The author of {s} is {o}.")),
    _Relation("year", "work", "year", "", "In what year was {x} published?",
              ("{s} was published in {o}.", "{s} first appeared in {o}.", "The publication year of {s} is {o}.")),
)  # fmt: skip
_RELATIONS_BY_SOURCE: dict[str, tuple[_Relation, ...]] = {
    kind: tuple(r for r in _RELATIONS if r.source == kind) for kind in ("person", "organisation", "city", "country", "work")
}
_YEAR_RELATIONS = {"person": "birth_year", "organisation": "founded_year", "work": "year"}
_COMPARISON_QUESTIONS = {
    "person": "How many years apart were {a} and {b} born?",
    "organisation": "How many years apart were {a} and {b} founded?",
    "work": "How many years apart were {a} and {b} published?",
}


@dataclass(frozen=True)
class WorldConfig:
    """Size and seed of a generated world; hashable, so it keys the per-process world and index caches.

    Attributes:
        seed: Seed of the world (entities, documents, questions and splits).
        n_people: Number of persons.
        n_cities: Number of cities.
        n_countries: Number of countries (each has a capital among the cities).
        n_organisations: Number of organisations.
        n_works: Number of works (books, symphonies, atlases ...).
        questions_per_hop: Questions generated for each of 1, 2 and 3 hops (fewer if the world runs out).
        comparison_fraction: Fraction of the 2-hop questions that are numeric comparisons.
        split_fractions: Fractions of train and dev questions; test gets the rest.
    """

    seed: int = 0
    n_people: int = 240
    n_cities: int = 48
    n_countries: int = 12
    n_organisations: int = 72
    n_works: int = 120
    questions_per_hop: int = 1200
    comparison_fraction: float = 0.2
    split_fractions: tuple[float, float] = (0.8, 0.1)

    def __post_init__(self) -> None:
        for name in ("n_people", "n_cities", "n_countries", "n_organisations", "n_works"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 4:
                raise ValueError(f"WorldConfig.{name} must be an integer >= 4, got {value!r}")
        if self.n_countries > self.n_cities:
            raise ValueError(
                f"WorldConfig needs n_countries <= n_cities (one capital each), got {self.n_countries} > {self.n_cities}"
            )
        if not isinstance(self.questions_per_hop, int) or self.questions_per_hop < 1:
            raise ValueError(f"WorldConfig.questions_per_hop must be an integer >= 1, got {self.questions_per_hop!r}")
        if not 0.0 <= self.comparison_fraction <= 1.0:
            raise ValueError(f"WorldConfig.comparison_fraction must lie in [0, 1], got {self.comparison_fraction!r}")
        train, dev = self.split_fractions
        if not (0.0 < train and 0.0 <= dev and train + dev <= 1.0):
            raise ValueError(
                "WorldConfig.split_fractions must be (train, dev) with train > 0 and train + dev <= 1, "
                f"got {self.split_fractions!r}"
            )

    def hot(self) -> WorldConfig:
        """The config of the held-out ("hot") world: same vocabulary and sizes, another seed."""
        return replace(self, seed=self.seed + _HOT_SEED_OFFSET)


@dataclass(frozen=True)
class Entity:
    """One invented entity and its functional facts (values are entity ids or years)."""

    id: str
    kind: str
    name: str
    aliases: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Document:
    """One searchable document: an id, a title and its text (printable ASCII)."""

    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Question:
    """A question with everything an evaluator or an oracle needs.

    Attributes:
        id: Unique id (``"q-00042"`` in a generated world, ``"hot-00042"`` in its hot world).
        question: The question text.
        answers: Accepted answers (the first is canonical, the others aliases).
        hops: Number of documents needed to answer (1 for user questions without gold documents).
        kind: ``"bridge"``, ``"comparison"`` or ``"user"``.
        gold_doc_ids: Ids of the supporting documents, in the order an ideal agent reads them.
        oracle_queries: One search query per gold document, in the same order.
        split: ``"train"``, ``"dev"``, ``"test"`` or ``"hot"``.
    """

    id: str
    question: str
    answers: tuple[str, ...]
    hops: int
    kind: str
    gold_doc_ids: tuple[str, ...]
    oracle_queries: tuple[str, ...]
    split: str


@dataclass(frozen=True, eq=False)
class World:
    """A corpus with its questions: a generated world, or a user's own corpus and QA file.

    Attributes:
        name: Human-readable name (``"fictional(seed=0)"`` or the corpus path).
        documents: Every document, in index order.
        questions: Every question of this world.
        entities: The generated entities (empty for user corpora).
    """

    name: str
    documents: tuple[Document, ...]
    questions: tuple[Question, ...]
    entities: tuple[Entity, ...] = ()

    @functools.cached_property
    def doc_index(self) -> dict[str, int]:
        """Document id -> row in :attr:`documents` (and in the search index)."""
        return {doc.id: i for i, doc in enumerate(self.documents)}

    @functools.cached_property
    def question_index(self) -> dict[str, Question]:
        """Question id -> question."""
        return {q.id: q for q in self.questions}

    @functools.cached_property
    def questions_by_text(self) -> dict[str, Question]:
        """Question text -> question (question texts are unique within a world)."""
        return {q.question: q for q in self.questions}

    def select(self, split: str | None = None, hops: int | None = None) -> tuple[Question, ...]:
        """Questions of ``split`` (any when ``None``) with ``hops`` hops (any when ``None``)."""
        return tuple(q for q in self.questions if (split is None or q.split == split) and (hops is None or q.hops == hops))


def build_world(config: WorldConfig, hot: bool = False) -> World:
    """Generate (once per process and config) the world of ``config``, or its hot world when ``hot``.

    Args:
        config: Sizes and seed.
        hot: Build the held-out world (:meth:`WorldConfig.hot`) whose questions all belong to the ``hot`` split.

    Returns:
        The world; calling again with an equal config returns the same object.
    """
    if not isinstance(config, WorldConfig):
        raise TypeError(f"config must be a WorldConfig, got {type(config).__name__}")
    return _build_world(config, bool(hot))


@functools.lru_cache(maxsize=8)
def _build_world(config: WorldConfig, hot: bool) -> World:
    seed = config.hot().seed if hot else config.seed
    # Hot questions never repeat a main-world question's text (shared vocabulary can make two titles equal),
    # so a question's text identifies it across both worlds.
    taken = frozenset(q.question for q in build_world(config).questions) if hot else frozenset()
    return _Generator(config, seed, hot, taken).build()


class _Generator:
    def __init__(self, config: WorldConfig, seed: int, hot: bool, taken: frozenset[str]) -> None:
        self.config = config
        self.taken = taken
        self.rng = np.random.default_rng(seed)
        self.hot = hot
        self.prefix = "hot-" if hot else ""
        self.used_names: set[str] = set()
        self.entities: dict[str, Entity] = {}

    # --- names ------------------------------------------------------------------------------------------
    def _pick(self, options: Sequence[_T]) -> _T:
        return options[int(self.rng.integers(len(options)))]

    def _word(self, min_syllables: int = 2, max_syllables: int = 3) -> str:
        n = int(self.rng.integers(min_syllables, max_syllables + 1))
        parts = [self._pick(_ONSETS) + self._pick(_VOWELS) for _ in range(n)]
        return ("".join(parts) + self._pick(_CODAS)).capitalize()

    def _pool(self, size: int, used: set[str]) -> list[str]:
        pool: list[str] = []
        while len(pool) < size:
            word = self._word()
            if word not in used and len(word) >= 4:
                used.add(word)
                pool.append(word)
        return pool

    def _unique(self, make: Any, count: int) -> list[str]:
        names: list[str] = []
        for _ in range(count * 200):
            if len(names) == count:
                return names
            name = make()
            if name not in self.used_names:
                self.used_names.add(name)
                names.append(name)
        raise RuntimeError(f"could not draw {count} distinct names; the world config is too large for its vocabulary")

    # --- world ------------------------------------------------------------------------------------------
    def build(self) -> World:
        c = self.config
        words: set[str] = set()
        first_names = self._pool(max(4, c.n_people // 4), words)
        last_names = self._pool(max(4, c.n_people // 4), words)
        city_roots = self._pool(max(4, (2 * c.n_cities) // 3), words)
        country_roots = self._pool(c.n_countries, words)

        def city_name() -> str:
            root = self._pick(tuple(city_roots))
            return root if self.rng.random() < 0.5 else f"{self._pick(_CITY_PREFIXES)} {root}"

        people = self._unique(lambda: f"{self._pick(tuple(first_names))} {self._pick(tuple(last_names))}", c.n_people)
        cities = self._unique(city_name, c.n_cities)
        countries = self._unique(lambda: self._pick(tuple(country_roots))[:-1] + self._pick(_COUNTRY_ENDINGS), c.n_countries)
        orgs = self._unique(
            lambda: f"{self._pick(tuple(last_names + city_roots))} {self._pick(_ORG_KINDS)}", c.n_organisations
        )

        def work_title() -> str:
            if self.rng.random() < 0.7:
                return f"The {self._pick(_WORK_ADJECTIVES)} {self._pick(_WORK_NOUNS)}"
            return f"The {self._pick(_WORK_NOUNS)} of {self._pick(tuple(city_roots))}"

        works = self._unique(work_title, c.n_works)

        def ids(kind: str, n: int) -> list[str]:
            return [f"{self.prefix}{kind}-{i:04d}" for i in range(n)]

        person_ids, city_ids, country_ids = ids("person", c.n_people), ids("city", c.n_cities), ids("country", c.n_countries)
        org_ids, work_ids = ids("org", c.n_organisations), ids("work", c.n_works)
        rint = self.rng.integers

        # Countries and cities: every country gets a distinct capital inside it; other cities get a random country.
        city_country = {cid: country_ids[int(rint(c.n_countries))] for cid in city_ids}
        capitals = self.rng.permutation(len(city_ids))[: c.n_countries]
        for country_index, city_index in enumerate(capitals):
            city_country[city_ids[int(city_index)]] = country_ids[country_index]
        for cid, name in zip(country_ids, countries, strict=True):
            capital = city_ids[int(capitals[country_ids.index(cid)])]
            self.entities[cid] = Entity(cid, "country", name, facts={"capital": capital})
        for cid, name in zip(city_ids, cities, strict=True):
            self.entities[cid] = Entity(cid, "city", name, facts={"country": city_country[cid]})

        # Persons: birth year, city, employer and a mentor born at least 10 years earlier when one exists.
        birth = {pid: int(rint(1720, 1960)) for pid in person_ids}
        for pid, name in zip(person_ids, people, strict=True):
            elders = [other for other in person_ids if birth[other] <= birth[pid] - 10]
            mentor = elders[int(rint(len(elders)))] if elders else person_ids[(person_ids.index(pid) + 1) % c.n_people]
            first, last = name.split(" ")
            self.entities[pid] = Entity(
                pid,
                "person",
                name,
                aliases=(f"{last}, {first}",),
                facts={
                    "born_in": city_ids[int(rint(c.n_cities))],
                    "works_for": org_ids[int(rint(c.n_organisations))],
                    "mentor": mentor,
                    "birth_year": birth[pid],
                    "occupation": self._pick(_OCCUPATIONS),
                },
            )
        for oid, name in zip(org_ids, orgs, strict=True):
            founder = person_ids[int(rint(c.n_people))]
            self.entities[oid] = Entity(
                oid,
                "organisation",
                name,
                facts={
                    "founder": founder,
                    "based_in": city_ids[int(rint(c.n_cities))],
                    "founded_year": birth[founder] + int(rint(20, 60)),
                    "description": self._pick(_ORG_DESCRIPTIONS),
                },
            )
        for wid, title in zip(work_ids, works, strict=True):
            author = person_ids[int(rint(c.n_people))]
            self.entities[wid] = Entity(
                wid,
                "work",
                title,
                facts={
                    "author": author,
                    "year": birth[author] + int(rint(20, 70)),
                    "description": self._pick(_WORK_DESCRIPTIONS),
                },
            )
        documents = tuple(self._document(entity) for entity in self.entities.values())
        questions = self._questions()
        name = f"fictional(seed={self.config.hot().seed if self.hot else self.config.seed})"
        return World(name=name, documents=documents, questions=questions, entities=tuple(self.entities.values()))

    # --- documents ----------------------------------------------------------------------------------------
    def _value_name(self, value: Any) -> str:
        return self.entities[value].name if isinstance(value, str) else str(value)

    def _document(self, entity: Entity) -> Document:
        facts = entity.facts
        if entity.kind == "person":
            intro = f"{entity.name} (also listed as {entity.aliases[0]}) is {_with_article(facts['occupation'])}."
        elif entity.kind == "organisation":
            intro = f"{entity.name} is {facts['description']}."
        elif entity.kind == "work":
            intro = f"{entity.name} is {facts['description']}."
        elif entity.kind == "city":
            intro = f"{entity.name} is a city."
        else:
            intro = f"{entity.name} is a country."
        sentences = [intro]
        for relation in _RELATIONS_BY_SOURCE[entity.kind]:
            template = self._pick(relation.sentences)
            sentences.append(template.format(s=entity.name, o=self._value_name(facts[relation.name])))
        return Document(
            id=f"{self.prefix}doc-{entity.id.removeprefix(self.prefix)}", title=entity.name, text=" ".join(sentences)
        )

    def doc_id(self, entity_id: str) -> str:
        return f"{self.prefix}doc-{entity_id.removeprefix(self.prefix)}"

    # --- questions ----------------------------------------------------------------------------------------
    def _questions(self) -> tuple[Question, ...]:
        c = self.config
        by_kind: dict[str, list[Entity]] = {}
        for entity in self.entities.values():
            by_kind.setdefault(entity.kind, []).append(entity)
        kinds = tuple(sorted(by_kind))
        seen: set[str] = set()
        drafts: list[tuple[str, tuple[str, ...], int, str, tuple[str, ...], tuple[str, ...]]] = []
        for hops in (1, 2, 3):
            n_comparison = round(c.questions_per_hop * c.comparison_fraction) if hops == 2 else 0
            made = 0
            for _ in range(c.questions_per_hop * 50):
                if made >= c.questions_per_hop:
                    break
                if made < n_comparison:
                    draft = self._comparison(by_kind)
                else:
                    start = self._pick(tuple(by_kind[self._pick(kinds)]))
                    draft = self._bridge(start, hops)
                if draft is None or draft[0] in seen or draft[0] in self.taken:
                    continue
                seen.add(draft[0])
                drafts.append((draft[0], draft[1], hops, draft[2], draft[3], draft[4]))
                made += 1
        order = self.rng.permutation(len(drafts))
        n_train = round(c.split_fractions[0] * len(drafts))
        n_dev = round(c.split_fractions[1] * len(drafts))
        splits: list[str] = [""] * len(drafts)
        for rank, index in enumerate(order):
            splits[int(index)] = (
                "hot" if self.hot else ("train" if rank < n_train else "dev" if rank < n_train + n_dev else "test")
            )
        id_prefix = "hot" if self.hot else "q"
        return tuple(
            Question(f"{id_prefix}-{i:05d}", text, answers, hops, kind, gold, queries, splits[i])
            for i, (text, answers, hops, kind, gold, queries) in enumerate(drafts)
        )

    def _answers(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            entity = self.entities[value]
            return (entity.name, *entity.aliases)
        return (str(value),)

    def _bridge(self, start: Entity, hops: int) -> tuple[str, tuple[str, ...], str, tuple[str, ...], tuple[str, ...]] | None:
        # Walk a chain e1 -r1-> e2 -r2-> ... ; the question names e1 only (HotpotQA "bridge" composition).
        chain = [start]
        relations: list[_Relation] = []
        for hop in range(hops):
            options = _RELATIONS_BY_SOURCE[chain[-1].kind]
            if hop < hops - 1:
                options = tuple(r for r in options if r.target != "year")
            relation = self._pick(options)
            relations.append(relation)
            if hop < hops - 1:
                chain.append(self.entities[chain[-1].facts[relation.name]])
        if len({e.id for e in chain}) < len(chain):
            return None  # a chain that revisits an entity (A's mentor's mentor is A) is degenerate
        final_value = chain[-1].facts[relations[-1].name]
        if isinstance(final_value, str) and final_value in {e.id for e in chain}:
            return None
        description = start.name
        for relation in relations[:-1]:
            description = relation.phrase.format(x=description)
        text = relations[-1].question.format(x=description)
        answers = self._answers(final_value)
        if contains_answer(text, answers):
            return None
        return text, answers, "bridge", tuple(self.doc_id(e.id) for e in chain), tuple(e.name for e in chain)

    def _comparison(
        self, by_kind: dict[str, list[Entity]]
    ) -> tuple[str, tuple[str, ...], str, tuple[str, ...], tuple[str, ...]] | None:
        # 2WikiMultihopQA-style comparison: two entities of one kind, a numeric attribute of each (two documents).
        kind = self._pick(tuple(sorted(_COMPARISON_QUESTIONS)))
        pool = by_kind[kind]
        a, b = (pool[int(i)] for i in self.rng.choice(len(pool), size=2, replace=False))
        relation = _YEAR_RELATIONS[kind]
        gap = abs(int(a.facts[relation]) - int(b.facts[relation]))
        if gap < 2:
            return None
        text = _COMPARISON_QUESTIONS[kind].format(a=a.name, b=b.name)
        answers = (str(gap),)
        if contains_answer(text, answers):
            return None
        return text, answers, "comparison", (self.doc_id(a.id), self.doc_id(b.id)), (a.name, b.name)
