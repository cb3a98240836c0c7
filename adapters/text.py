"""Turning a helpdesk's HTML message bodies into the plain text the engine and the AI work with.

Every vendor sends HTML somewhere (Zendesk ``html_body``, Freshdesk ``body``, Help Scout threads),
so the conversion lives here once: same rules for every adapter, tested once.
"""

from __future__ import annotations

import re
from html import escape

import html2text
from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage

_BLANK_RUNS = re.compile(r"\n{3,}")
_SPACE_RUNS = re.compile(r"[ \t\xa0]{32,}")
MAX_INPUT = 100_000
"""Characters of a body read at all. Customers paste logs and mail clients send megabytes of
markup; past this nothing is a question, and every parser below must see bounded input."""
# Every language mail-parser-reply knows: customers answer from mail clients in their own language,
# and each language only adds its clients' quote headers and sign-offs.
REPLY_LANGUAGES = tuple(MAIL_LANGUAGES)


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
    text = converter.handle(_bounded(html)).replace("\xa0", " ")
    return _BLANK_RUNS.sub("\n\n", _strip_line_ends(text)).strip()


def _bounded(text: str) -> str:
    """``text`` with long runs of blanks folded to one space, cut to ``MAX_INPUT``, before any
    parsing: a 200 KB run of spaces made ``[ \t]+$`` (and the reply parser) take minutes while
    holding the GIL, which froze the whole daemon, heartbeats included."""
    return _SPACE_RUNS.sub(" ", text[:MAX_INPUT * 8])[:MAX_INPUT]


def _strip_line_ends(text: str) -> str:
    """Trailing blanks off every line, in linear time (a regex anchored at line ends is not)."""
    return "\n".join(line.rstrip(" \t") for line in text.split("\n"))


def body_text(text: str | None = None, html: str | None = None) -> str:
    """A message body as plain text: the vendor's own text version when it has one, else the HTML
    converted. Vendors' text versions are what their agents see in notifications, so they win."""
    if text and text.strip():
        plain = _strip_line_ends(_bounded(text).replace("\r\n", "\n"))
        return _BLANK_RUNS.sub("\n\n", plain).strip()
    return html_to_text(html or "")


def clean_body(text: str | None = None, html: str | None = None) -> str:
    """The words the customer wrote this time: quoted reply history and signatures removed.

    Meant for customer messages only, which become the question. Agents' messages and our own
    drafts keep their full text, because our marker may follow a sign-off ("Best regards") that
    signature detection would cut away, together with the marker. If stripping would leave
    nothing (a mail that is all quote or all signature), the whole text is kept: an odd message
    is better than a lost one.
    """
    plain = body_text(text, html)
    if not plain:
        return ""
    message = EmailMessage(
        text=plain, languages=list(REPLY_LANGUAGES), keep_hyphen_lists=True
    ).read()
    latest = message.replies[0].body if message.replies else ""
    return _with_indentation(latest, plain) if latest.strip() else plain


def _with_indentation(kept: str, original: str) -> str:
    """``kept`` with the original lines' indentation back (list nesting, code).

    mail-parser-reply strips every line before it looks for quotes and signatures; what it keeps
    is a run of those stripped lines in order, so each is matched to the next original line
    with the same text. A line it changed inside (a disclaimer cut out) keeps its stripped form.
    """
    lines = original.split("\n")
    restored: list[str] = []
    position = 0
    for line in kept.split("\n"):
        found = next((i for i in range(position, len(lines)) if lines[i].strip() == line), None)
        if line and found is not None:
            restored.append(lines[found].rstrip())
            position = found + 1
        else:
            restored.append(line)
    return _BLANK_RUNS.sub("\n\n", "\n".join(restored)).strip()


def text_to_html(text: str) -> str:
    """Plain text as the HTML a helpdesk stores: paragraphs on blank lines, line breaks kept.

    Our drafts and notes are plain text (markers included); vendors that take HTML would
    otherwise run the lines together. Everything is escaped, so an answer cannot inject markup.
    """
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").strip()) if p]
    return "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
