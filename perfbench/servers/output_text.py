"""One sequence's output text, built a token at a time: incremental detokenisation and stop strings.

Detokenising uses the prefix/read offsets of TGI and vLLM: the text a new token adds is the
decode of a short window of recent ids minus the decode of that window without it, so tokenizers
whose pieces depend on their neighbours (SentencePiece's leading space) come out right. A decode
that ends in U+FFFD means the last token ended inside a multi-byte UTF-8 character: its text is
held back until a later token completes the character, so no delta ever carries half of one.

Stop strings: the text is cut before the first one found, and the end of the text that could
still grow into one is held back, so a stop string never leaks into a stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Prompt tokens kept in front of the generated ids when detokenising, so tokenizers that drop a
# leading space at the start of a decode (SentencePiece) still produce the right first delta.
PREFIX_TOKENS = 5


@dataclass(eq=False)
class OutputText:
    """The text of one sequence and how much of it was sent."""

    ids: list[int]  # the prompt's last PREFIX_TOKENS ids, then every generated id
    prefix_offset: int  # where the decode window starts
    read_offset: int  # ids before this are already in ``text``
    text: str = ""  # decoded so far (cut at a stop string once one is found)
    sent_chars: int = 0  # how much of ``text`` went out in deltas

    @classmethod
    def after(cls, prompt_ids: list[int]) -> "OutputText":
        tail = list(prompt_ids[-PREFIX_TOKENS:])
        return cls(ids=tail, prefix_offset=0, read_offset=len(tail))

    def add(self, tokenizer: Any, token: int | None, *, final: bool) -> str:
        """Append ``token``'s text once it is complete (``final``: whatever is held); None only flushes. Returns the new text."""
        if token is not None:
            self.ids.append(token)
        prefix_text = tokenizer.decode(self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=True)
        new_text = tokenizer.decode(self.ids[self.prefix_offset :], skip_special_tokens=True)
        if len(new_text) > len(prefix_text) and (final or not new_text.endswith("\ufffd")):
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            added = new_text[len(prefix_text) :]
            self.text += added
            return added
        return ""

    def cut_at_stop(self, stops: tuple[str, ...]) -> bool:
        """Cut the text before the first stop string found since what was sent; True when one was."""
        window_start = max(0, self.sent_chars - max(len(s) for s in stops))
        found = [i for i in (self.text.find(s, window_start) for s in stops) if i >= 0]
        if found:
            self.text = self.text[: min(found)]
        return bool(found)

    def take(self, hold_for: tuple[str, ...], *, final: bool) -> str | None:
        """The text to send now; None when nothing can be yet (``hold_for``: stop strings whose start is held back)."""
        end = len(self.text) - _stop_prefix_length(self.text, hold_for) if hold_for else len(self.text)
        if not final and end <= self.sent_chars:
            return None
        text = self.text[self.sent_chars : max(end, self.sent_chars)]
        self.sent_chars = max(end, self.sent_chars)
        return text


def _stop_prefix_length(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that could still grow into a stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
