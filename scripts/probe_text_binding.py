"""What the frozen LM alone binds, on the compact open-ended episodes of the Shapes validation split, when each image
is replaced by words or by vectors: the probe behind the word-anchor design (README). 100 queries a cell, greedy,
first word scored, task induction on.

- category: ``a star: dax`` (the category-only text oracle); bare: ``star: dax``;
- attributes, then category: ``large red star: dax``; full: ``a large red star on the left: dax``;
- vectors, then category: three random vectors at the LM's word-embedding scale (the same three for every image),
  then the category word: what a visual prefix whose last embedding is the word gives the LM; the same with noise of
  half that scale added per image.

    python scripts/probe_text_binding.py
"""

import re

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from frozen_hf.bundled import bundled_language_model_path
from frozen_hf.eval.tasks import TaskSettings, apply_variant, build_task

path = bundled_language_model_path()
tokenizer = AutoTokenizer.from_pretrained(path)
language_model = AutoModelForCausalLM.from_pretrained(path).eval()
embed = language_model.get_input_embeddings()
word_rms = embed.weight.pow(2).mean().sqrt()
SLOT = "@@"


def first_word(text: str, vectors_per_marker: list[torch.Tensor] | None = None) -> str:
    """Greedy answer's first word; with vectors, each SLOT in `text` is replaced by the next tensor of vectors."""
    pieces = text.split(SLOT)
    parts = []
    for index, piece in enumerate(pieces):
        if index:
            parts.append(vectors_per_marker[index - 1])
        if piece:
            ids = tokenizer(piece, return_tensors="pt", add_special_tokens=False).input_ids
            parts.append(embed(ids)[0])
    inputs = torch.cat(parts)[None]
    with torch.no_grad():
        out = language_model.generate(
            inputs_embeds=inputs, attention_mask=torch.ones(inputs.shape[:2], dtype=torch.long), max_new_tokens=4,
            do_sample=False, pad_token_id=tokenizer.eos_token_id,
        )
    words = tokenizer.decode(out[0], skip_special_tokens=True).strip().split()
    return re.sub(r"\W", "", words[0]).lower() if words else ""


def vectors(count: int, noise: float) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    shared = torch.randn(3, embed.weight.shape[1], generator=generator) * word_rms
    return [shared + noise * word_rms * torch.randn(3, embed.weight.shape[1], generator=generator) for _ in range(count)]


VARIANTS = {
    "category": lambda full, category: (category, None),
    "bare": lambda full, category: (category.replace("\na ", "\n"), None),
    "attributes, then category": lambda full, category: (
        re.sub(r"\ba (\w+) (\w+) (\w+) (on|at|in) the (\w+):", r"\1 \2 \3:", full), None),
    "full": lambda full, category: (full, None),
    "vectors, then category": lambda full, category: (
        re.sub(r"\na (\w+):", rf"\n{SLOT} \1:", category), vectors(category.count("\na "), 0.0)),
    "vectors with noise, then category": lambda full, category: (
        re.sub(r"\na (\w+):", rf"\n{SLOT} \1:", category), vectors(category.count("\na "), 0.5)),
}

for ways, inner_shots, episodes in ((2, 1, 50), (5, 1, 20), (5, 3, 20)):
    data = build_task("shapes_open_ended", TaskSettings(
        ways=ways, inner_shots=inner_shots, num_episodes=episodes, layout="compact", split="validation"))
    full_prompts, category_prompts = apply_variant(data, "text_oracle"), apply_variant(data, "text_oracle_category")
    row = {}
    for name, build in VARIANTS.items():
        hits = 0
        for full, category, reference in zip(full_prompts, category_prompts, data.references):
            text, slot_vectors = build(full.text, category.text)
            hits += first_word(text, slot_vectors) == reference.lower()
        row[name] = round(100 * hits / len(data.references), 1)
    print(f"{ways}-way {inner_shots}-shot, {len(data.references)} queries: {row}", flush=True)
