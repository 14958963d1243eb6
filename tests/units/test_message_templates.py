"""Every message template has exactly one renderer, and an unknown template fails loudly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.domain.catalogue import Catalogue
from bot.domain.vocabulary import Template
from bot.slack.render.context import RenderContext
from bot.slack.render.messages import TEMPLATES, render_message


def _ctx() -> RenderContext:
    # Neither test looks anything up in the catalogue.
    catalogue = Catalogue.model_construct(services=[])
    return RenderContext(catalogue=catalogue, now=datetime(2026, 1, 1, tzinfo=UTC))


def test_every_template_has_exactly_one_renderer():
    assert list(TEMPLATES) == list(Template)
    assert all(type(key) is Template for key in TEMPLATES)
    assert all(callable(renderer) for renderer in TEMPLATES.values())


def test_templates_are_found_by_their_stored_string():
    for template in Template:
        assert TEMPLATES[template.value] is TEMPLATES[template]


def test_rendering_an_unknown_template_raises_a_key_error():
    ctx = _ctx()
    with pytest.raises(KeyError, match="unknown message template 'no_such_template'"):
        render_message("no_such_template", None, {}, ctx)


def test_the_text_template_renders_its_text_as_one_section():
    ctx = _ctx()
    text, blocks = render_message(Template.TEXT, None, {"text": "hello"}, ctx)
    assert text == "hello"
    assert blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]
