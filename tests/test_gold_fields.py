"""Gold fields are declared by each verifier (`gold_fields`), and prompt templates refuse to show them (issue 26)."""

from __future__ import annotations

import pytest

from sdp.sources.templates import PromptTemplate, TemplateError, render_prompt
from verifiers import registry


class _Plain:
    chat_template = None


class _SecretVerifier:
    name = "secret"
    gold_fields = ("secret",)

    def verify(self, problem, completion):  # pragma: no cover - never called
        raise AssertionError


class _EntryPoint:
    name = "secret"

    def load(self):
        return _SecretVerifier


@pytest.fixture
def fresh_cache():
    registry.gold_fields.cache_clear()
    yield
    registry.gold_fields.cache_clear()


@pytest.mark.parametrize(("name", "fields"), [("math", {"answer"}), ("code", {"tests", "io"}),
                                              ("tests.plugins:NeedleVerifier", {"needle"}),
                                              ("tests.plugins:RejectVerifier", set())])
def test_verifiers_declare_their_gold_fields(name, fields, fresh_cache):
    assert registry.gold_fields(name) == fields


@pytest.mark.parametrize("text", ["{prompt} {answer}", "{tests}\n{prompt}", "{io}"])
def test_builtin_gold_fields_are_refused_at_construction(text, fresh_cache):
    with pytest.raises(TemplateError, match="gold fields"):
        PromptTemplate(prompt_template=text)


def test_an_entry_point_plugin_s_gold_field_is_refused_at_construction(monkeypatch, fresh_cache):
    monkeypatch.setattr(registry, "_plugin_entry_points", lambda: {"secret": _EntryPoint()})
    with pytest.raises(TemplateError, match=r"\['secret'\]"):
        PromptTemplate(prompt_template="{prompt} ({secret})")


def test_a_dotted_path_plugin_s_gold_field_is_refused_when_its_problem_is_rendered(fresh_cache):
    template = PromptTemplate(prompt_template="{prompt} [{needle}]")  # not registered: unknown at construction
    other = {"id": "a", "domain": "math", "prompt": "Say x", "needle": "x"}
    assert render_prompt(_Plain(), other, template) == "Say x [x]\n"  # for math, `needle` is no gold
    needle = {**other, "domain": "tests.plugins:NeedleVerifier"}
    with pytest.raises(TemplateError, match=r"verifier 'tests.plugins:NeedleVerifier'.*\['needle'\]"):
        render_prompt(_Plain(), needle, template)


def test_gold_fields_must_be_names():
    class Bad:
        gold_fields = "answer"

    with pytest.raises(TypeError, match="tuple of field names"):
        registry.declared_gold_fields(Bad)
