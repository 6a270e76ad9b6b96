"""Closed-ended scoring: the log-likelihood of each candidate name (``" " + name``) as the continuation of a
few-shot prompt, and the ranking of an episode's names by it.

Prompts that share a prefix reuse its KV cache through the answer engine's planning (`frozen_hf.eval.engine`), with
the same scores as encoding each prompt whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .engine import (
    EngineStats,
    ModelContext,
    cache_rows,
    chunks,
    encode_prefixes,
    engine_call,
    plan_reuse,
    run_reuse_units,
)
from .prompting import Prompt

__all__ = ["rank_candidates", "score_candidates"]


def _candidate_ids(tokenizer, candidates: Sequence[str]) -> list[list[int]]:
    ids = [tokenizer(" " + c.strip(), add_special_tokens=False)["input_ids"] for c in candidates]
    for c, i in zip(candidates, ids):
        if not i:
            raise ValueError(f"Candidate {c!r} tokenizes to nothing; give non-empty candidate names.")
    return ids


def _score_from(
    enc: ModelContext, logits: torch.Tensor, cache, attention_mask: torch.Tensor, last: torch.Tensor, cand_ids
) -> torch.Tensor:
    """Log-likelihood of every candidate continuation for each prompt row. Returns (rows, candidates)."""
    rows, num_cand = logits.shape[0], len(cand_ids)
    width = max(len(c) for c in cand_ids)
    first = torch.log_softmax(logits, dim=-1)  # (rows, vocab)
    tokens = torch.full((num_cand, width), enc.pad_id, dtype=torch.long, device=logits.device)
    valid = torch.zeros((num_cand, width), dtype=torch.bool, device=logits.device)
    for j, ids in enumerate(cand_ids):
        tokens[j, : len(ids)] = torch.tensor(ids, device=logits.device)
        valid[j, : len(ids)] = True
    scores = first[:, tokens[:, 0]]  # (rows, cand)
    if width > 1:
        cache.batch_repeat_interleave(num_cand)
        inputs = tokens[:, :-1].repeat(rows, 1)  # row-major: (row0: cand0..candC, row1: ...)
        mask = torch.cat(
            [attention_mask.repeat_interleave(num_cand, dim=0), valid[:, :-1].repeat(rows, 1).long()], dim=1
        )
        positions = last.repeat_interleave(num_cand)[:, None] + torch.arange(1, width, device=logits.device)[None]
        out = enc.forward(input_ids=inputs, attention_mask=mask, position_ids=positions, cache=cache)
        logp = torch.log_softmax(out.logits.float(), dim=-1)  # (rows*cand, width-1, vocab)
        targets = tokens[:, 1:].repeat(rows, 1)
        picked = logp.gather(-1, targets[..., None])[..., 0]
        picked = picked * valid[:, 1:].repeat(rows, 1)
        scores = scores + picked.sum(dim=1).view(rows, num_cand)
    return scores


@torch.no_grad()
def score_candidates(
    model,
    processor,
    prompts: Sequence[Prompt],
    candidates: Sequence[Sequence[str]] | None = None,
    *,
    batch_size: int = 16,
    reuse_prefix_cache: bool = True,
    stats: EngineStats | None = None,
) -> list[list[float]]:
    """Closed-ended scores: the log-likelihood of each candidate name (``" " + name``) after each prompt.

    `candidates` defaults to each prompt's own `candidates` (the episode's names). Prompts sharing a
    prefix reuse its KV cache when `reuse_prefix_cache`; otherwise every prompt is encoded whole.
    """
    if candidates is None:
        candidates = [p.candidates for p in prompts]
    if len(candidates) != len(prompts):
        raise ValueError(f"Got {len(candidates)} candidate lists for {len(prompts)} prompts.")
    for index, c in enumerate(candidates):
        if not c:
            raise ValueError(
                f"Prompt {index} has no candidates: closed-ended ranking needs the episode's names "
                "(open_ended_prompts sets them)."
            )
    stats = stats if stats is not None else EngineStats()
    results: list[list[float] | None] = [None] * len(prompts)
    with engine_call(model, processor, prompts, stats) as enc:
        distinct_lists = {tuple(c) for c in candidates}
        longest_candidate = max(len(ids) for c in distinct_lists for ids in _candidate_ids(enc.tokenizer, c))
        reuse_groups, plain = plan_reuse(enc, prompts, reuse_prefix_cache, stats, longest_candidate)
        # Rows scored together share one candidate list: split groups by it first.
        scored_groups = [sub for group in reuse_groups for sub in _same_candidates(group, candidates)]

        def score(indices, logits, cache, mask, last):
            for sub in _same_candidates(indices, candidates):
                rows = [indices.index(i) for i in sub]
                sub_cache = cache
                if len(sub) != len(indices):
                    sub_cache = cache_rows(cache, torch.tensor(rows, device=logits.device))
                scores = _score_from(
                    enc, logits[rows], sub_cache, mask[rows], last[rows], _candidate_ids(enc.tokenizer, candidates[sub[0]])
                )
                for index, row in zip(sub, scores.tolist()):
                    results[index] = row

        run_reuse_units(enc, prompts, scored_groups, batch_size, score)
        stats.prefix_groups_reused += len(reuse_groups)
        stats.prompts_via_reuse += sum(len(g) for g in reuse_groups)
        for sub in _same_candidates(plain, candidates):
            for chunk in chunks(sub, batch_size):
                encoded = encode_prefixes(enc, [prompts[i] for i in chunk])
                scores = _score_from(
                    enc, encoded.last_logits, encoded.cache, encoded.attention_mask, encoded.lengths - 1,
                    _candidate_ids(enc.tokenizer, candidates[chunk[0]]),
                )
                for index, row in zip(chunk, scores.tolist()):
                    results[index] = row
        stats.prompts_via_plain += len(plain)
    return results  # type: ignore[return-value]


def _same_candidates(indices: Sequence[int], candidates: Sequence[Sequence[str]]) -> list[list[int]]:
    groups: dict[tuple[str, ...], list[int]] = {}
    for i in indices:
        groups.setdefault(tuple(candidates[i]), []).append(i)
    return list(groups.values())


def rank_candidates(
    model,
    processor,
    prompts: Sequence[Prompt],
    candidates: Sequence[Sequence[str]] | None = None,
    **kwargs,
) -> list[str]:
    """Closed-ended answers: for each prompt, the candidate with the highest log-likelihood."""
    if candidates is None:
        candidates = [p.candidates for p in prompts]
    scores = score_candidates(model, processor, prompts, candidates, **kwargs)
    return [list(c)[max(range(len(s)), key=s.__getitem__)] for c, s in zip(candidates, scores)]
