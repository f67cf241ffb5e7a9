import re

import pytest

from palaestra.envs.text.rewards import contains_answer, normalize_answer
from palaestra.envs.text.search import index_for
from palaestra.envs.text.world import WorldConfig, _build_world, _with_article, build_world


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig())


@pytest.fixture(scope="module")
def hot_world():
    return build_world(WorldConfig(), hot=True)


def test_world_is_deterministic_and_cached(world):
    assert build_world(WorldConfig()) is world
    fresh = _build_world.__wrapped__(WorldConfig(), False)
    assert [d.text for d in fresh.documents] == [d.text for d in world.documents]
    assert [(q.question, q.answers) for q in fresh.questions] == [(q.question, q.answers) for q in world.questions]


def test_other_seed_gives_other_world(world):
    other = build_world(WorldConfig(seed=5))
    assert {d.title for d in other.documents} != {d.title for d in world.documents}


def test_world_is_ascii_and_sized(world):
    c = WorldConfig()
    assert len(world.documents) == c.n_people + c.n_cities + c.n_countries + c.n_organisations + c.n_works
    for doc in world.documents:
        assert doc.text.isascii() and doc.title.isascii()
    for q in world.questions:
        assert q.question.isascii() and all(a.isascii() for a in q.answers)


def test_splits_and_hops(world, hot_world):
    splits = {q.split for q in world.questions}
    assert splits == {"train", "dev", "test"}
    assert {q.split for q in hot_world.questions} == {"hot"}
    for hops in (1, 2, 3):
        assert len(world.select("dev", hops)) > 50
        assert all(len(q.gold_doc_ids) == hops == len(q.oracle_queries) for q in world.select(hops=hops))
    n = len(world.questions)
    assert 0.75 * n < len(world.select("train")) < 0.85 * n
    kinds = {q.kind for q in world.select(hops=2)}
    assert kinds == {"bridge", "comparison"}


def test_question_ids_and_texts_unique(world, hot_world):
    ids = [q.id for q in world.questions + hot_world.questions]
    assert len(ids) == len(set(ids))
    texts = [q.question for q in world.questions + hot_world.questions]
    assert len(texts) == len(set(texts))


def test_hot_world_shares_vocabulary_but_not_entities(world, hot_world):
    names = {d.title for d in world.documents}
    hot_names = {d.title for d in hot_world.documents}
    persons = {e.name for e in world.entities if e.kind == "person"}
    hot_persons = {e.name for e in hot_world.entities if e.kind == "person"}
    assert len(persons & hot_persons) < 0.05 * len(persons)
    assert names != hot_names
    # same templates: every hot question starts like some main-world question
    starts = {q.question.split(" ")[0] for q in world.questions}
    assert {q.question.split(" ")[0] for q in hot_world.questions} <= starts


@pytest.mark.parametrize("hot", [False, True])
def test_answers_never_in_question_and_reachable_through_gold_docs(hot):
    """Guards over every question (thousands): no leak, every hop readable, the oracle's query finds each gold doc."""
    world = build_world(WorldConfig(), hot=hot)
    index = index_for(world)
    docs = {d.id: d for d in world.documents}
    assert len(world.questions) >= 3000
    for q in world.questions:
        assert not contains_answer(q.question, q.answers), q
        gold = [docs[g] for g in q.gold_doc_ids]
        assert all(normalize_answer(a) for a in q.answers)
        if q.kind == "bridge":
            # each bridge entity is named in the previous gold document; the answer is in the last one
            for previous, query in zip(gold[:-1], q.oracle_queries[1:], strict=True):
                assert query in previous.text
            assert contains_answer(gold[-1].text, q.answers)
        else:
            years = [int(next(t for t in d.text.replace(".", " ").split() if t.isdigit() and len(t) == 4)) for d in gold]
            assert str(abs(years[0] - years[1])) == q.answers[0]
        for query, gold_id in zip(q.oracle_queries, q.gold_doc_ids, strict=True):
            assert gold_id in [hit.doc_id for hit in index.search(query, 3)], (q, query)


def test_distractors_share_name_parts(world):
    last_names = [e.name.split(" ")[1] for e in world.entities if e.kind == "person"]
    assert len(set(last_names)) < len(last_names) / 2  # surnames are shared across persons
    index = index_for(world)
    surname = max(set(last_names), key=last_names.count)
    assert len(index.search(surname, 10)) >= 3  # a vague query is ambiguous


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_people": 2},
        {"n_cities": 4, "n_countries": 5},
        {"questions_per_hop": 0},
        {"comparison_fraction": 1.5},
        {"split_fractions": (0.9, 0.2)},
    ],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(ValueError, match="WorldConfig"):
        WorldConfig(**kwargs)


def test_build_world_type_error():
    with pytest.raises(TypeError, match="WorldConfig"):
        build_world({"seed": 0})


@pytest.mark.parametrize(
    ("noun", "expected"),
    [
        ("architect", "an architect"),
        ("engineer", "an engineer"),
        ("astronomer", "an astronomer"),
        ("chemist", "a chemist"),
        ("historian", "a historian"),
        ("university", "a university"),
        ("hour", "an hour"),
        ("Atlas", "an Atlas"),
    ],
)
def test_with_article_follows_the_first_sound(noun, expected):
    assert _with_article(noun) == expected


def test_documents_use_a_before_consonants_and_an_before_vowels(world, hot_world):
    texts = [d.text for w in (world, hot_world) for d in w.documents]
    assert not [m.group(0) for t in texts for m in re.finditer(r"\b[Aa] [AEIOUaeiou]\w*", t)]
    assert not [m.group(0) for t in texts for m in re.finditer(r"\b[Aa]n (?![AEIOUaeiou])\w+", t)]
    assert any(" is an architect." in t for t in texts)  # the occupations that start with a vowel
