"""`agentflow new`'s pattern choice from a description (flows/language/scaffold.py)."""

from __future__ import annotations

import pytest

from agentflow.flows.language.scaffold import select_pattern

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("description, pattern, word", [
    ("Fix lint errors in each file of the package", "fan-out", "'each'"),
    ("Profile the endpoint until p95 is under 300 ms", "iterative", "'until'"),
    ("Draft the release notes, then have a human approve them", "approval", "'approve'"),
    ("Run the linters and the type checker in parallel", "parallel", "'in parallel'"),
    ("Build the docs after the API reference is generated", "dag", "'after'"),
    ("Summarise the repository", "sequential", ""),
])
def test_the_pattern_follows_the_words_of_the_description(description, pattern, word):
    chosen, why = select_pattern(description)
    assert chosen == pattern
    assert word in why if word else why == "no word of the description asks for another pattern"


def test_a_word_inside_another_does_not_count():
    assert select_pattern("Reach the beach")[0] == "sequential"  # not 'each'
