"""Templates render what users expect, and nothing a template says can exhaust the server."""

from __future__ import annotations

import pytest

from outdial.templates import TemplateProblem, compile_template, render


def rendered(source: str, **variables: object) -> str:
    return render(compile_template(source), variables)


def test_variables_defaults_and_filters() -> None:
    assert rendered("Hi {{ name }}", name="Ann") == "Hi Ann"
    assert rendered('Hi {{ name | default("there") }}') == "Hi there"
    assert (
        rendered("{{ name | upper }} {{ city | title }}", name="ann", city="new york")
        == "ANN New York"
    )
    assert rendered("{{ name.strip() }}", name="  Ann ") == "Ann"
    assert (
        rendered("{% if vip %}Welcome back{% else %}Hello{% endif %}", vip=True) == "Welcome back"
    )


def test_a_missing_variable_is_an_error() -> None:
    with pytest.raises(TemplateProblem, match="name"):
        rendered("Hi {{ name }}")


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'a' * 100000000 }}",
        "{{ name * 100000 }}",
        "{{ 10 ** 100000 }}",
        "{{ '%100000000d' % 1 }}",
        "{{ name.ljust(100000000) }}",
        "{{ name.center(100000000) }}",
        "{{ '{:>100000000}'.format(1) }}",
        "{{ name" + " | replace('a', 'aaaaaaaaaa')" * 6 + " }}",
        "{{ name | center(100000000) }}",
        "{{ name | indent(100000000) }}",
        "{{ range(100000) | list }}",
        "{{ ''.__class__ }}",
    ],
)
def test_templates_that_would_blow_up_are_refused(source: str) -> None:
    with pytest.raises(TemplateProblem):
        rendered(source, name="aaaa")


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in name %}{{ i }}{% endfor %}",
        "{% macro m() %}x{% endmacro %}{{ m() }}",
        "{% include 'other' %}",
        "{% filter upper %}x{% endfilter %}",
    ],
)
def test_blocks_are_refused_when_compiled(source: str) -> None:
    with pytest.raises(TemplateProblem, match=r"not allowed|syntax"):
        compile_template(source)
