"""Untrusted text made safe to show: one helper for the CLI and the TUI.

A run name, a config value, an error message or a genotype string may come from someone
else's ``nasw.db`` or YAML file. Rendered as Rich markup, ``[/bold] oops [red`` raises a
``MarkupError`` (and takes the whole table down with it); an ANSI escape sequence reaches
the terminal and can move the cursor, retitle the window or hide text. :func:`safe_text`
strips control characters and escapes markup, so the result can be interpolated into any
Rich or Textual markup string and shows exactly the characters that were stored.
"""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape

#: C0 and C1 control characters (ESC included) and DEL; tab and newline are kept only when asked
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_ALL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: ANSI CSI / OSC sequences, removed whole so no stray "[31m" is left behind
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


def plain_text(value: Any, *, max_len: int | None = None, keep_newlines: bool = False) -> str:
    """``value`` as a string with ANSI sequences and control characters removed (no escaping).

    For places that render text literally (``rich.text.Text``, a ``DataTable`` cell given a
    ``Text``, JSON, a pipe); ``max_len`` cuts long values with an ellipsis.
    """
    text = "" if value is None else str(value)
    text = _ANSI.sub("", text)
    if not keep_newlines:
        text = text.replace("\t", " ").replace("\n", " ")
    text = (_CONTROL if keep_newlines else _CONTROL_ALL).sub("", text)
    if max_len is not None and len(text) > max_len:
        text = text[: max(0, max_len - 1)] + "…"
    return text


def safe_text(value: Any, *, max_len: int | None = None, keep_newlines: bool = False) -> str:
    """:func:`plain_text`, then Rich markup escaped: safe inside any markup string."""
    return escape(plain_text(value, max_len=max_len, keep_newlines=keep_newlines))


__all__ = ["plain_text", "safe_text"]
