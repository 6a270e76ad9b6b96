"""The answer engine: greedy open-ended answers to few-shot Frozen prompts, with the prefix KV reuse that
closed-ended scoring (`frozen_hf.eval.scoring`) shares.

Prompts come from :mod:`frozen_hf.eval.prompting`. Two paths give the same answers:

- the plain path: batches of whole prompts through the processor and ``model.generate`` (greedy);
- the prefix-reuse path (``reuse_prefix_cache=True``, the default): prompts that share a
  :class:`~frozen_hf.eval.prompting.PromptPrefix` (task induction + support set) are grouped; each prefix
  and its images are encoded once into a KV cache, whose rows are copied for the queries of its
  group; only the query segments and the answer tokens are computed per query. The prefixes of
  several small episodes are encoded side by side, so that their queries decode in one batch.

In the prefix-reuse path every row is laid out ``[pad][prefix][pad][query]``, with position ids
that skip both paddings, so each row sees exactly the positions and keys it would see alone.
Groups with a single prompt, or no prefix, go through the plain path.

The closed-ended variant (the summed log-likelihood of each candidate name after the prompt) is in
:mod:`frozen_hf.eval.scoring`; it runs on the same `ModelContext`, `plan_reuse` and `run_reuse_units`.
"""

from __future__ import annotations

import copy
import time
import weakref
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteria
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .prompting import Prompt

__all__ = [
    "EngineStats",
    "ModelContext",
    "engine_call",
    "generate_answers",
    "postprocess_answer",
]


# Cache layer updates that build new tensors rather than write into existing ones (see `cache_rows`).
_APPENDING_UPDATES = (DynamicLayer.update, DynamicSlidingWindowLayer.update)


@dataclass
class EngineStats:
    """Counters of one engine call, for benchmarks and reports."""

    prompts: int = 0
    prefix_groups_reused: int = 0
    prompts_via_reuse: int = 0
    prompts_via_plain: int = 0
    fallbacks: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        """Records `message` once."""
        if message not in self.notes:
            self.notes.append(message)


def postprocess_answer(text: str, stop_at_newline: bool = True) -> str:
    """The answer part of generated text: from its first non-blank character up to the next new line (where the
    next prompt segment would start), stripped."""
    text = text.lstrip()
    if stop_at_newline:
        text = text.split("\n", 1)[0]
    return text.strip()


def _eos_ids(model, tokenizer) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def _pad_id(tokenizer, eos_ids: list[int]) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return eos_ids[0] if eos_ids else 0


class _AnswerEnd:
    """Where `postprocess_answer` will end an answer, known token by token during decoding.

    An answer ends at the first new line after its first non-blank character; decoding a row can stop there, which
    leaves the answer unchanged and saves the decode steps that would only be cut away.
    """

    _tables: "weakref.WeakKeyDictionary[Any, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]" = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, tokenizer, device: torch.device):
        if tokenizer not in self._tables:
            texts = tokenizer.batch_decode([[index] for index in range(len(tokenizer))])
            self._tables[tokenizer] = (
                torch.tensor([text.strip() != "" for text in texts]),
                torch.tensor(["\n" in text for text in texts]),
                torch.tensor(["\n" in text.lstrip() for text in texts]),
            )
        self.content, self.newline, self.newline_after_content = (t.to(device) for t in self._tables[tokenizer])

    def _lookup(self, table: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return table[tokens.clamp(0, table.numel() - 1)] & (tokens < table.numel())

    def step(self, tokens: torch.Tensor, started: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For one new token per row: whether the answer ends with it, and the updated 'answer has started'."""
        ends = torch.where(started, self._lookup(self.newline, tokens), self._lookup(self.newline_after_content, tokens))
        return ends, started | self._lookup(self.content, tokens)

    def ended(self, generated: torch.Tensor) -> torch.Tensor:
        """Per row of `generated` (rows, steps): whether its answer has ended."""
        content = self._lookup(self.content, generated).long()
        started_before = (content.cumsum(dim=1) - content) > 0
        ends = torch.where(
            started_before, self._lookup(self.newline, generated), self._lookup(self.newline_after_content, generated)
        )
        return ends.any(dim=1)


class _StopAtAnswerEnd(StoppingCriteria):
    """`generate()` stopping criterion: a row is done once its answer has ended (see `_AnswerEnd`)."""

    def __init__(self, answer_end: _AnswerEnd, prompt_length: int):
        self.answer_end = answer_end
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return self.answer_end.ended(input_ids[:, self.prompt_length :])


def _cut_at_eos(rows: list[list[int]], eos_ids: Sequence[int]) -> list[list[int]]:
    """Each generated row up to (not including) its first end-of-sequence token."""
    cut = []
    for row in rows:
        end = next((index for index, token in enumerate(row) if token in eos_ids), len(row))
        cut.append(row[:end])
    return cut


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _group_by_prefix(prompts: Sequence[Prompt]) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for index, prompt in enumerate(prompts):
        groups.setdefault(id(prompt.prefix), []).append(index)
    return list(groups.values())


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


class ModelContext:
    """One model with its processor, tokenizer, device and special token ids: what every engine call needs to
    tokenize prompts and run forward passes on them."""

    def __init__(self, model, processor):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device = _model_device(model)
        self.eos_ids = _eos_ids(model, self.tokenizer)
        self.pad_id = _pad_id(self.tokenizer, self.eos_ids)

    def batch(self, texts: list[str], images: list[list[Any]], add_special_tokens: bool = True) -> dict:
        """Processor batch (left padding) on the model's device."""
        has_images = any(len(i) for i in images)
        saved = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            encoded = self.processor(
                text=texts,
                images=images if has_images else None,
                return_tensors="pt",
                padding=True,
                add_special_tokens=add_special_tokens,
            )
        finally:
            self.tokenizer.padding_side = saved
        return {k: v.to(self.device) for k, v in encoded.items() if k in ("input_ids", "attention_mask", "pixel_values")}

    def split_lengths(self, prompt: Prompt) -> tuple[int, int] | None:
        """Token counts of the prompt's prefix and suffix (image markers expanded), or None when tokenizing them
        separately does not give the whole prompt's tokens (then the prefix cannot be reused).

        Image markers are special tokens, so the check on unexpanded text is the check on the expanded one.
        """
        tok = self.tokenizer
        whole = tok(prompt.text, add_special_tokens=True)["input_ids"]
        head = tok(prompt.prefix.text, add_special_tokens=True)["input_ids"]
        tail = tok(prompt.suffix_text, add_special_tokens=False)["input_ids"]
        if list(whole) != list(head) + list(tail):
            return None
        marker = self.processor.image_token_id
        extra = self.processor.visual_prefix_length - 1
        return len(head) + extra * list(head).count(marker), len(tail) + extra * list(tail).count(marker)

    def sliding_window(self) -> int | None:
        """The LM's sliding attention window, if any of its layers has one.

        Rows of the reuse path carry padding between prefix and query; sliding-window masks count cache slots,
        not positions, so such a row sees the keys it would see alone only while the whole row fits the window.
        """
        text_config = self.model.config.text_config
        window = getattr(text_config, "sliding_window", None)
        layer_types = getattr(text_config, "layer_types", None)
        if not window or (layer_types is not None and "sliding_attention" not in layer_types):
            return None
        return int(window)

    def image_features(self, pixel_values: torch.Tensor | None) -> dict | None:
        if pixel_values is None or pixel_values.shape[0] == 0:
            return None
        features = self.model.get_image_features(pixel_values=pixel_values)
        return {"image": BaseModelOutputWithPooling(pooler_output=features.pooler_output)}

    def forward(self, **kwargs):
        return self.model(use_cache=True, return_dict=True, **kwargs)


def _greedy_from(
    enc: ModelContext,
    logits: torch.Tensor,
    cache,
    attention_mask: torch.Tensor,
    last_positions: torch.Tensor,
    max_new_tokens: int,
    answer_end: _AnswerEnd | None = None,
) -> list[list[int]]:
    """Greedy decoding from the logits of the last prompt position, as `generate` does it (rows stop at EOS, and at
    the end of their answer when `answer_end` is given)."""
    batch = logits.shape[0]
    eos = torch.tensor(enc.eos_ids, device=logits.device, dtype=torch.long)
    finished = torch.zeros(batch, dtype=torch.bool, device=logits.device)
    started = torch.zeros_like(finished)
    generated: list[torch.Tensor] = []
    positions = last_positions.clone()
    for step in range(max_new_tokens):
        next_tokens = logits.argmax(dim=-1)
        next_tokens = torch.where(finished, torch.full_like(next_tokens, enc.pad_id), next_tokens)
        generated.append(next_tokens)
        if eos.numel():
            finished = finished | torch.isin(next_tokens, eos)
        if answer_end is not None:
            ended, started = answer_end.step(next_tokens, started)
            finished = finished | ended
        if step == max_new_tokens - 1 or bool(finished.all()):
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, 1)], dim=1)
        positions = positions + 1
        out = enc.forward(
            input_ids=next_tokens[:, None],
            attention_mask=attention_mask,
            position_ids=positions[:, None],
            cache=cache,
            logits_to_keep=1,
        )
        cache = out.cache
        logits = out.logits[:, -1].float()
    return _cut_at_eos(torch.stack(generated, dim=1).tolist(), enc.eos_ids)


@dataclass
class _Prefixes:
    """KV cache of a batch of distinct prefixes (left padded), one row each."""

    cache: Any
    attention_mask: torch.Tensor  # (rows, prefix tokens)
    lengths: torch.Tensor  # real tokens per row
    last_logits: torch.Tensor  # (rows, vocab): the next-token logits after each prefix


def cache_rows(cache, index: torch.Tensor):
    """A new cache holding rows `index` of `cache`, which stays as it was.

    Dynamic cache layers replace their tensors on every update (`torch.cat`) instead of writing into them, so the
    new cache can start from index-selected tensors without copying the whole cache first.
    """
    if not all(type(layer).update in _APPENDING_UPDATES for layer in cache.layers):
        cache = copy.deepcopy(cache)
        cache.batch_select_indices(index)
        return cache
    selected = copy.copy(cache)
    selected.layers = [copy.copy(layer) for layer in cache.layers]
    selected.batch_select_indices(index)
    return selected


def encode_prefixes(enc: ModelContext, prefixes: Sequence[Any]) -> _Prefixes:
    """Encodes several prefixes at once (images included); positions skip the left padding, as in `generate`."""
    batch = enc.batch([p.text for p in prefixes], [list(p.images) for p in prefixes], add_special_tokens=True)
    features = enc.image_features(batch.pop("pixel_values", None))
    mask = batch["attention_mask"]
    positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
    out = enc.forward(
        input_ids=batch["input_ids"],
        attention_mask=mask,
        position_ids=positions,
        mm_encoder_outputs=features,
        logits_to_keep=1,
    )
    return _Prefixes(out.cache, mask, mask.long().sum(dim=1), out.logits[:, -1].float())


def _encode_queries(enc: ModelContext, prompts: Sequence[Prompt], prefixes: _Prefixes, rows: Sequence[int]):
    """Runs the query segments of `prompts` on a copy of their prefixes' cache (`rows[i]`: the prefix of prompt i).

    Each row is laid out ``[prefix padding][prefix][query padding][query]``, with position ids that skip both
    paddings. Returns (last-position logits, cache, attention mask, last position id per row).
    """
    suffix = enc.batch(
        [p.suffix_text for p in prompts], [list(p.suffix_images) for p in prompts], add_special_tokens=False
    )
    features = enc.image_features(suffix.pop("pixel_values", None))
    index = torch.tensor(list(rows), dtype=torch.long, device=prefixes.attention_mask.device)
    suffix_mask = suffix["attention_mask"]
    attention_mask = torch.cat([prefixes.attention_mask[index], suffix_mask], dim=1)
    start = prefixes.lengths[index][:, None]
    position_ids = torch.maximum(start + suffix_mask.long().cumsum(dim=1) - 1, start)
    cache = cache_rows(prefixes.cache, index)
    out = enc.forward(
        input_ids=suffix["input_ids"],
        attention_mask=attention_mask,
        position_ids=position_ids,
        cache=cache,
        mm_encoder_outputs=features,
        logits_to_keep=1,
    )
    return out.logits[:, -1].float(), out.cache, attention_mask, position_ids[:, -1]


def _reuse_units(groups: list[list[int]], batch_size: int) -> list[list[list[int]]]:
    """Packs prefix groups into units encoded together: as many groups as fit `batch_size` queries (a bigger
    group alone), so that the decoding steps of small episodes run batched."""
    units: list[list[list[int]]] = []
    current: list[list[int]] = []
    count = 0
    for group in groups:
        if current and count + len(group) > batch_size:
            units.append(current)
            current, count = [], 0
        current.append(group)
        count += len(group)
    if current:
        units.append(current)
    return units


def run_reuse_units(enc: ModelContext, prompts: Sequence[Prompt], groups: list[list[int]], batch_size: int, step) -> None:
    """Encodes the prefixes of each unit once, then calls `step(indices, logits, cache, mask, last)` per query batch."""
    for unit in _reuse_units(groups, batch_size):
        prefixes = encode_prefixes(enc, [prompts[g[0]].prefix for g in unit])
        items = [(i, row) for row, group in enumerate(unit) for i in group]
        for chunk in chunks(items, batch_size):
            indices = [i for i, _ in chunk]
            logits, cache, mask, last = _encode_queries(enc, [prompts[i] for i in indices], prefixes, [r for _, r in chunk])
            step(indices, logits, cache, mask, last)


def _plain_generate(
    enc: ModelContext, prompts: Sequence[Prompt], max_new_tokens: int, answer_end: _AnswerEnd | None = None
) -> list[list[int]]:
    batch = enc.batch([p.text for p in prompts], [p.images for p in prompts])
    stopping = [_StopAtAnswerEnd(answer_end, batch["input_ids"].shape[1])] if answer_end is not None else None
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=enc.eos_ids or None,
        pad_token_id=enc.pad_id,
    )
    output = enc.model.generate(**batch, generation_config=config, stopping_criteria=stopping)
    return _cut_at_eos(output[:, batch["input_ids"].shape[1] :].tolist(), enc.eos_ids)


def plan_reuse(enc: ModelContext, prompts: Sequence[Prompt], reuse_prefix_cache: bool, stats: EngineStats, new_tokens: int):
    """Splits prompt indices into reusable prefix groups and the rest (plain path).

    `new_tokens`: how many tokens each row grows by after its prompt (answer or candidate tokens).
    """
    candidates: list[tuple[list[int], int, int]] = []  # (group, prefix tokens, longest suffix tokens)
    plain: list[int] = []
    for group in _group_by_prefix(prompts):
        first = prompts[group[0]]
        if reuse_prefix_cache and len(group) > 1 and first.prefix.text:
            lengths = [enc.split_lengths(prompts[i]) for i in group]
            if all(length is not None for length in lengths):
                candidates.append((group, lengths[0][0], max(length[1] for length in lengths)))
                continue
            stats.fallbacks += len(group)
            stats.note("prefix/suffix tokenization differs from the whole prompt's: plain path used")
        plain.extend(group)
    window = enc.sliding_window()
    if window is None or not candidates:
        return [group for group, _, _ in candidates], sorted(plain)
    # Rows packed together are as wide as the longest prefix plus the longest suffix among them.
    longest_suffix = max(suffix for _, _, suffix in candidates)
    reuse_groups: list[list[int]] = []
    for group, prefix, _ in candidates:
        if prefix + longest_suffix + new_tokens < window:
            reuse_groups.append(group)
        else:
            plain.extend(group)
            stats.fallbacks += len(group)
            stats.note(f"prompt too long for the LM's {window}-token sliding attention window: plain path used")
    return reuse_groups, sorted(plain)


@contextmanager
def engine_call(model, processor, prompts: Sequence[Prompt], stats: EngineStats):
    """One engine call on `prompts`: yields the `ModelContext` with the model in eval mode, restores its mode
    afterwards, and counts the prompts and the time in `stats`."""
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        yield ModelContext(model, processor)
    finally:
        model.train(was_training)
    stats.prompts += len(prompts)
    stats.seconds += time.perf_counter() - start


@torch.no_grad()
def generate_answers(
    model,
    processor,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int = 8,
    batch_size: int = 16,
    reuse_prefix_cache: bool = True,
    stop_at_newline: bool = True,
    stats: EngineStats | None = None,
) -> list[str]:
    """Greedy open-ended answers to few-shot prompts, in prompt order.

    Args:
        model: a `FrozenForConditionalGeneration` (any model with its forward / `get_image_features` contract).
        processor: its `FrozenProcessor`.
        prompts: from `frozen_hf.eval.prompting`; prompts of one episode share a prefix object.
        max_new_tokens: tokens generated per answer (greedy; stops early at EOS).
        batch_size: prompts per forward pass.
        reuse_prefix_cache: encode each shared prefix once and reuse its KV cache (same answers).
        stop_at_newline: cut answers at the first new line (where the next prompt segment would start).
        stats: filled with counters (groups reused, fallbacks, time) when given.

    Returns:
        The decoded answers (special tokens dropped, stripped).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    stats = stats if stats is not None else EngineStats()
    results: list[list[int] | None] = [None] * len(prompts)
    with engine_call(model, processor, prompts, stats) as enc:
        reuse_groups, plain = plan_reuse(enc, prompts, reuse_prefix_cache, stats, max_new_tokens)
        answer_end = _AnswerEnd(enc.tokenizer, enc.device) if stop_at_newline else None

        def decode(indices, logits, cache, mask, last):
            for index, ids in zip(indices, _greedy_from(enc, logits, cache, mask, last, max_new_tokens, answer_end)):
                results[index] = ids

        run_reuse_units(enc, prompts, reuse_groups, batch_size, decode)
        stats.prefix_groups_reused += len(reuse_groups)
        stats.prompts_via_reuse += sum(len(g) for g in reuse_groups)
        for chunk in chunks(plain, batch_size):
            for index, ids in zip(chunk, _plain_generate(enc, [prompts[i] for i in chunk], max_new_tokens, answer_end)):
                results[index] = ids
        stats.prompts_via_plain += len(plain)
    texts = enc.tokenizer.batch_decode(results, skip_special_tokens=True)
    return [postprocess_answer(t, stop_at_newline) for t in texts]
