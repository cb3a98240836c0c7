"""Turning a helpdesk's HTML message bodies into the plain text the engine and the AI work with.

Every vendor sends HTML somewhere (Zendesk ``html_body``, Freshdesk ``body``, Help Scout threads),
so the conversion lives here once: same rules for every adapter, tested once.
"""

from __future__ import annotations

import re

import html2text

_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)


class _PlainText(html2text.HTML2Text):
    """html2text without Markdown escaping.

    html2text escapes text that would read as Markdown syntax ("1." becomes "1\\."), which is
    right for Markdown output but leaves stray backslashes in a customer's words. Treating every
    text run like an entity's text is html2text's own switch for "do not escape this".
    """

    def handle_data(self, data: str, entity_char: bool = False) -> None:
        super().handle_data(data, entity_char=True)


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body: paragraphs and lists kept, markup and images gone.

    Links stay as ``[text](url)`` because the URL is often the point of the message. No line
    wrapping: the text is fed to a model and quoted back, not printed on a terminal.
    """
    if not html or not html.strip():
        return ""
    converter = _PlainText()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.unicode_snob = True
    text = converter.handle(html).replace("\xa0", " ")
    text = _TRAILING_SPACE.sub("", text)
    return _BLANK_RUNS.sub("\n\n", text).strip()
