"""The running batch's KV cache: per layer, left-padded rows in buffers with room to grow.

transformers' ``DynamicLayer`` grows by ``torch.cat`` at every step: each token copies the whole
cache (measured: 7 ms of a 48 ms decode step, 23M-parameter Llama, 32 rows of 220 tokens, CPU),
and during the copy the cache is held twice. ``GrowingLayer`` keeps keys and values in buffers
with ``GROW_COLUMNS`` spare columns; ``keys``/``values`` are views of the filled part, so the
model's attention reads them as it reads a ``DynamicLayer``'s, and a decode step writes one column.
The buffers are rebuilt only when they are full or the rows change (``select_rows``, ``merge``).

Layers of other kinds (sliding-window caches, say) are left as transformers made them; the
row and column edits below work on their tensors the same way.

Imported only by the generator thread's code, since it needs torch and transformers.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

GROW_COLUMNS = 64  # spare columns a buffer gets when it is (re)built: one rebuild per 64 decode steps


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values are views of buffers with spare columns."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.device = keys.device
        self.is_initialized = True
        self.place(keys, values)

    def place(self, keys: torch.Tensor, values: torch.Tensor, spare: int = GROW_COLUMNS) -> None:
        """Copy ``keys``/``values`` ([rows, heads, columns, dim]) into new buffers with ``spare`` free columns."""
        rows, heads, columns, dim = keys.shape
        self._key_buffer = keys.new_empty((rows, heads, columns + spare, dim))
        self._value_buffer = values.new_empty((rows, values.shape[1], columns + spare, values.shape[-1]))
        self._key_buffer[..., :columns, :] = keys
        self._value_buffer[..., :columns, :] = values
        self.keys = self._key_buffer[..., :columns, :]
        self.values = self._value_buffer[..., :columns, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        used, new = self.keys.shape[-2], key_states.shape[-2]
        if used + new > self._key_buffer.shape[-2]:
            self.place(self.keys, self.values, spare=max(GROW_COLUMNS, new))
        self._key_buffer[..., used : used + new, :] = key_states
        self._value_buffer[..., used : used + new, :] = value_states
        self.keys = self._key_buffer[..., : used + new, :]
        self.values = self._value_buffer[..., : used + new, :]
        return self.keys, self.values


def new_cache() -> DynamicCache:
    """An empty cache for a prefill; ``adopt`` it once the prefill filled it."""
    return DynamicCache()


def adopt(cache: DynamicCache) -> DynamicCache:
    """``cache`` with its plain dynamic layers turned into growing ones (same contents)."""
    cache.layers = [
        GrowingLayer(layer.keys, layer.values) if type(layer) is DynamicLayer and layer.is_initialized else layer
        for layer in cache.layers
    ]
    return cache


def _set(layer: Any, keys: torch.Tensor, values: torch.Tensor) -> None:
    if isinstance(layer, GrowingLayer):
        layer.place(keys, values)
    else:
        layer.keys, layer.values = keys, values


def select_rows(cache: DynamicCache, index: torch.Tensor, first_column: int) -> None:
    """Keep the rows ``index`` and the columns from ``first_column`` on (those left of it are padding in every row)."""
    for layer in cache.layers:
        _set(layer, layer.keys.index_select(0, index)[..., first_column:, :], layer.values.index_select(0, index)[..., first_column:, :])


def merge(cache: DynamicCache, joining: DynamicCache, width: int) -> None:
    """Append ``joining``'s rows below ``cache``'s, both left-padded with zeros to ``width`` columns."""

    def pad_left(t: torch.Tensor) -> torch.Tensor:
        missing = width - t.shape[-2]
        if missing == 0:
            return t
        return torch.cat([t.new_zeros((*t.shape[:-2], missing, t.shape[-1])), t], dim=-2)

    for layer, new_layer in zip(cache.layers, joining.layers):
        keys = torch.cat([pad_left(layer.keys), pad_left(new_layer.keys)], dim=0)
        values = torch.cat([pad_left(layer.values), pad_left(new_layer.values)], dim=0)
        _set(layer, keys, values)
