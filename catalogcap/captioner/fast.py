"""Faster BLIP inference: SDPA attention and dynamic int8 Linear layers.

transformers 5.x refuses `attn_implementation="sdpa"` for BLIP, so `enable_sdpa` swaps the
class of each attention module for a subclass whose forward computes the same thing with
`torch.nn.functional.scaled_dot_product_attention`. Everything else is left as transformers
made it: the 4D additive masks the text model builds, the KV cache (an `EncoderDecoderCache`
during `generate`), the projections (so peft LoRA layers around `query`/`value` still apply).
When attention weights are requested (`output_attentions=True`), the original forward runs.

This module imports torch and transformers: import it only where a model is loaded.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.cache_utils import Cache, EncoderDecoderCache
from transformers.models.blip.modeling_blip import BlipAttention
from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

try:  # Where transformers 5.x records what `output_attentions` asked for (no kwarg reaches the module).
    from transformers.utils.output_capturing import _active_collector
except ImportError:  # pragma: no cover - other transformers versions
    _active_collector = None

__all__ = [
    "SdpaBlipAttention",
    "SdpaBlipTextSelfAttention",
    "disable_sdpa",
    "enable_sdpa",
    "quantize_int8",
]

_WEIGHT_KEYS = ("attentions", "cross_attentions")


def _weights_requested(kwargs: dict[str, Any]) -> bool:
    """Whether the caller wants attention probabilities, which SDPA does not produce.

    transformers 5.x collects attentions with forward hooks (`capture_outputs`): the flag is
    read by the model's top-level forward and, for the text model, never passed down to
    `BlipTextSelfAttention`. The active collector says whether attentions are being recorded.
    """
    if kwargs.get("output_attentions"):
        return True
    collected = _active_collector.get() if _active_collector is not None else None
    return bool(collected) and any(key in collected for key in _WEIGHT_KEYS)


def _additive_mask(mask: torch.Tensor | None, query: torch.Tensor) -> torch.Tensor | None:
    """The mask as SDPA takes it: boolean as is, float (0 / dtype-min) in the query's dtype."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return mask.to(query.device)
    return mask.to(device=query.device, dtype=query.dtype)


class SdpaBlipAttention(BlipAttention):
    """BLIP vision self-attention computed by `scaled_dot_product_attention`."""

    def forward(self, hidden_states: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        if _weights_requested(kwargs):
            return super().forward(hidden_states, **kwargs)
        bsz, tgt_len, embed_dim = hidden_states.size()
        qkv = (
            self.qkv(hidden_states)
            .reshape(bsz, tgt_len, 3, self.num_heads, embed_dim // self.num_heads)
            .permute(2, 0, 3, 1, 4)
        )
        query, key, value = qkv.unbind(0)
        context = F.scaled_dot_product_attention(
            query, key, value, dropout_p=self.dropout.p if self.training else 0.0, scale=self.scale
        )
        context = context.transpose(1, 2).reshape(bsz, tgt_len, self.embed_dim)
        return self.projection(context), None


class SdpaBlipTextSelfAttention(BlipTextSelfAttention):
    """BLIP text self- or cross-attention computed by `scaled_dot_product_attention`.

    Mask and cache semantics are those of `BlipTextSelfAttention.forward` in transformers
    5.x, line for line: cross-attention uses `encoder_attention_mask` (which
    `BlipTextAttention` never passes, so image tokens are unmasked), its keys/values are
    computed once and then read from `cache.cross_attention_cache`, self-attention appends
    to `cache.self_attention_cache`.
    """

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if _weights_requested(kwargs):
            return super().forward(
                hidden_states,
                attention_mask=attention_mask,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                cache=cache,
                **kwargs,
            )
        input_shape = hidden_states.shape[:-1]
        query = self.query(hidden_states).view(*input_shape, -1, self.attention_head_size).transpose(1, 2)
        is_cross_attention = encoder_hidden_states is not None
        mask = encoder_attention_mask if is_cross_attention else attention_mask
        current_states = encoder_hidden_states if is_cross_attention else hidden_states
        key, value = self._keys_values(current_states, is_cross_attention, cache, kwargs)
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=_additive_mask(mask, query),
            dropout_p=self.dropout.p if self.training else 0.0,
            scale=1.0 / math.sqrt(self.attention_head_size),
        )
        context = context.transpose(1, 2).reshape(*input_shape, self.all_head_size)
        return context, None

    def _keys_values(
        self, states: torch.Tensor, is_cross_attention: bool, cache: Cache | None, kwargs: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Project keys/values of `states`, or reuse/extend them through the cache as transformers does."""
        is_updated = False
        layer_cache = cache
        if isinstance(cache, EncoderDecoderCache):
            is_updated = bool(cache.is_updated.get(self.layer_idx))
            layer_cache = cache.cross_attention_cache if is_cross_attention else cache.self_attention_cache
        if is_cross_attention and layer_cache is not None and is_updated:
            layer = layer_cache.layers[self.layer_idx]
            return layer.keys, layer.values
        kv_shape = (*states.shape[:-1], -1, self.attention_head_size)
        key = self.key(states).view(kv_shape).transpose(1, 2)
        value = self.value(states).view(kv_shape).transpose(1, 2)
        if layer_cache is not None:
            key, value = layer_cache.update(key, value, self.layer_idx, kwargs=kwargs)
            if is_cross_attention and isinstance(cache, EncoderDecoderCache):
                cache.is_updated[self.layer_idx] = True
        return key, value


_SDPA_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    BlipAttention: SdpaBlipAttention,
    BlipTextSelfAttention: SdpaBlipTextSelfAttention,
}
_EAGER_CLASSES = {sdpa: eager for eager, sdpa in _SDPA_CLASSES.items()}


def _swap(model: nn.Module, classes: dict[type[nn.Module], type[nn.Module]]) -> int:
    swapped = 0
    for module in model.modules():
        target = classes.get(type(module))
        if target is not None:
            module.__class__ = target
            swapped += 1
    return swapped


def enable_sdpa(model: nn.Module) -> int:
    """Compute BLIP attention with SDPA, in place; return how many modules were switched.

    Works on a `BlipForConditionalGeneration`, any part of it, or a peft model wrapping it.
    Only modules of exactly `BlipAttention` / `BlipTextSelfAttention` are switched, so a second
    call returns 0. Weights, state dict and hooks are unchanged.
    """
    return _swap(model, _SDPA_CLASSES)


def disable_sdpa(model: nn.Module) -> int:
    """Undo `enable_sdpa`, in place; return how many modules were switched back."""
    return _swap(model, _EAGER_CLASSES)


def quantize_int8(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Dynamic int8 quantization of every `nn.Linear` for CPU inference; returns the model in eval mode.

    Weights are stored as int8, activations are quantized per batch at run time. Uses
    `torch.ao.quantization.quantize_dynamic`: deprecated in favour of torchao's `quantize_`,
    but still shipped by torch and needing no extra package. A copy is made unless `inplace`.
    The result only runs on CPU and cannot be trained or saved with `save_pretrained`.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions")
        from torch.ao import quantization

        quantize_dynamic = getattr(quantization, "quantize_dynamic", None)
        if quantize_dynamic is None:  # pragma: no cover - a torch without it
            raise RuntimeError("this torch has no torch.ao.quantization.quantize_dynamic; install torchao")
        quantized = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=inplace)
    return quantized.eval()
