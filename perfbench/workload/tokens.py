"""Local token counting: the fallback when a server sends no ``usage``, and exact synthetic prompts.

The server's ``usage`` is always preferred (DESIGN.md); a local tokenizer is loaded only when the
user passes one (``--tokenizer``), from local files only: nothing is downloaded at run time.
A directory with ``tokenizer.json`` is read with the ``tokenizers`` library alone, and its chat
template rendered with transformers' Jinja renderer, which does not import torch (importing
``AutoTokenizer`` does: 1.5 s and hundreds of MB for a client run). Anything else (a name in the
local Hugging Face cache, a slow-tokenizer-only directory) goes through ``AutoTokenizer``. Both
are imported inside ``load_tokenizer``, never at module import.

What is counted:
- ``Tokenizer.count(text)`` counts the text alone, without special tokens (no BOS/EOS). This is
  right for output text (a server's ``completion_tokens`` never includes a BOS) and is what a
  synthetic prompt's ``input_tokens`` means: the prompt's own tokens.
- For *input* as the server counts it (``usage.prompt_tokens``) use ``count_prompt_tokens``
  (completions: the text plus the special tokens the tokenizer adds, e.g. BOS) or
  ``count_chat_tokens`` (chat: the chat template rendered with the generation prompt, which
  brings its own BOS and role markers).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from perfbench.core.errors import ConfigError

log = logging.getLogger(__name__)

_INSTALL_HINT = "install it with: pip install 'perfbench[transformers]'"


@runtime_checkable
class Tokenizer(Protocol):
    """What perfbench needs from a tokenizer."""

    def count(self, text: str) -> int:
        """Tokens in ``text``, without special tokens."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens."""

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens left out."""


class HFTokenizer:
    """A ``transformers`` tokenizer behind the ``Tokenizer`` protocol."""

    __slots__ = ("name", "hf")

    def __init__(self, hf: Any, name: str) -> None:
        self.hf = hf  # the transformers tokenizer (PreTrainedTokenizerFast or alike)
        self.name = name  # what the user passed: a directory or a cached model name

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r})"

    def count(self, text: str, *, add_special_tokens: bool = False) -> int:
        return len(self.encode(text, add_special_tokens=add_special_tokens))

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        # verbose=False: counting a long output is not feeding a model; no max-length warning.
        return list(self.hf.encode(text, add_special_tokens=add_special_tokens, verbose=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=True)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.hf, "chat_template", None))

    def encode_chat(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Ids of the chat template rendered for ``messages``, with the generation prompt."""
        out = self.hf.apply_chat_template([dict(m) for m in messages], tokenize=True, add_generation_prompt=True)
        # transformers 5 returns a BatchEncoding by default, 4.x a plain list of ids.
        return list(out["input_ids"] if isinstance(out, Mapping) else out)


class FileTokenizer:
    """A ``tokenizer.json`` directory read without transformers' model stack (no torch import)."""

    __slots__ = ("name", "_tok", "_special_tokens", "_chat_template")

    def __init__(self, directory: Path, name: str) -> None:
        from tokenizers import Tokenizer as _Tokenizers

        self.name = name
        self._tok = _Tokenizers.from_file(str(directory / "tokenizer.json"))
        config_path = directory / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        # The chat template sees bos_token, eos_token, ... by name, as transformers passes them.
        self._special_tokens = {
            key: (value["content"] if isinstance(value, Mapping) else value)
            for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
            if isinstance(value := config.get(key), (str, Mapping))
        }
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        jinja_file = directory / "chat_template.jinja"  # transformers >= 4.50 saves it beside
        self._chat_template = jinja_file.read_text(encoding="utf-8") if jinja_file.is_file() else template

    def __repr__(self) -> str:
        return f"FileTokenizer({self.name!r})"

    def count(self, text: str, *, add_special_tokens: bool = False) -> int:
        return len(self.encode(text, add_special_tokens=add_special_tokens))

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    @property
    def has_chat_template(self) -> bool:
        return bool(self._chat_template)

    def encode_chat(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Ids of the chat template rendered for ``messages``, with the generation prompt."""
        try:
            from transformers.utils.chat_template_utils import render_jinja_template
        except ImportError:
            raise ConfigError(f"counting chat tokens needs the transformers package; {_INSTALL_HINT}") from None
        rendered, _ = render_jinja_template(
            conversations=[[dict(m) for m in messages]],
            chat_template=self._chat_template,
            add_generation_prompt=True,
            **self._special_tokens,
        )
        # As transformers does: the template writes BOS itself, so add no special tokens.
        return self.encode(rendered[0])


@functools.lru_cache(maxsize=8)
def load_tokenizer(name_or_path: str) -> Tokenizer:
    """Load a tokenizer from a local directory or the local Hugging Face cache (never the network).

    Raises:
        ConfigError: transformers is not installed, or no tokenizer files were found.
    """
    directory = Path(name_or_path)
    if (directory / "tokenizer.json").is_file():
        try:
            return FileTokenizer(directory, name_or_path)
        except ImportError:
            raise ConfigError(f"--tokenizer needs the tokenizers package; {_INSTALL_HINT}") from None
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception for a corrupt file
            log.debug("loading tokenizer %r failed", name_or_path, exc_info=True)
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(
                f"cannot load tokenizer {name_or_path!r} ({reason}); pass a directory with valid tokenizer files"
            ) from None
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ConfigError(f"--tokenizer needs the transformers package; {_INSTALL_HINT}") from None
    not_found = (
        f"tokenizer {name_or_path!r} not found locally; pass a directory with tokenizer files (--tokenizer PATH)"
    )
    try:
        hf = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError) as e:  # what transformers raises for missing files / unknown names
        log.debug("loading tokenizer %r failed: %s", name_or_path, e)
        raise ConfigError(not_found) from None
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception for a corrupt file
        log.debug("loading tokenizer %r failed", name_or_path, exc_info=True)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(
            f"cannot load tokenizer {name_or_path!r} ({reason}); pass a directory with tokenizer files (--tokenizer PATH)"
        ) from None
    if hf is None or not hasattr(hf, "encode"):
        raise ConfigError(not_found)
    return HFTokenizer(hf, name_or_path)


def count_prompt_tokens(tokenizer: Tokenizer, text: str) -> int:
    """Prompt tokens as a completions server counts them: ``text`` plus added special tokens (BOS)."""
    if isinstance(tokenizer, (HFTokenizer, FileTokenizer)):
        return tokenizer.count(text, add_special_tokens=True)
    return tokenizer.count(text)


def count_chat_tokens(tokenizer: Tokenizer, messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens of a chat request: the chat template with the generation prompt when the
    tokenizer has one, else the message contents joined by newlines."""
    if isinstance(tokenizer, (HFTokenizer, FileTokenizer)) and tokenizer.has_chat_template:
        return len(tokenizer.encode_chat(messages))
    return tokenizer.count("\n".join(message_text(m) for m in messages))


def message_text(message: Mapping[str, Any]) -> str:
    """The text of one chat message; OpenAI content parts contribute their ``text`` parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
