"""The Frozen model family: freezing, loss, generation equivalences, save/reload, backbones, attention, errors."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from transformers import Trainer, TrainingArguments

from frozen_hf import FrozenConfig, FrozenForConditionalGeneration, FrozenModel
from tests.helpers.tiny import random_images, tiny_config, tiny_model, tiny_processor


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


@pytest.fixture(scope="module")
def model(processor):
    return tiny_model(processor)


def few_shot_batch(processor, padding_side: str = "left"):
    images = random_images(3)
    processor.tokenizer.padding_side = padding_side
    try:
        return processor(
            text=["<image> this is a dax . <image> this is a", "<image> a red"],
            images=[images[:2], images[2:]],
            return_tensors="pt",
            padding=True,
        )
    finally:
        processor.tokenizer.padding_side = "left"


def language_model_state(model) -> dict[str, torch.Tensor]:
    return {
        name: tensor.detach().clone()
        for name, tensor in model.state_dict().items()
        if name.startswith(("model.language_model.", "lm_head."))
    }


def test_language_model_frozen_after_init_and_from_pretrained(model, tmp_path):
    def trainable(m):
        return {name for name, p in m.named_parameters() if p.requires_grad}

    assert trainable(model) and all(name.startswith(("model.vision_model.", "model.visual_prefix.")) for name in trainable(model))
    model.save_pretrained(tmp_path)
    reloaded = FrozenForConditionalGeneration.from_pretrained(tmp_path)
    assert trainable(reloaded) == trainable(model)
    assert not any(p.requires_grad for p in reloaded.lm_head.parameters())
    base = FrozenModel.from_pretrained(tmp_path)
    assert not any(p.requires_grad for p in base.language_model.parameters())


def test_language_model_stays_in_eval_mode_while_training(processor):
    model = tiny_model(processor, text="gpt2")  # GPT-2 has dropout: a training-mode LM would not be frozen
    model.train()
    assert model.model.vision_model.training
    assert not model.model.language_model.training
    batch = few_shot_batch(processor)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, model(**batch).logits)


def test_trainer_steps_change_only_vision_and_projection(processor, tmp_path):
    model = tiny_model(processor)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    lm_before = language_model_state(model)
    images = random_images(8, seed=1)
    rows = [{"text": "<image> a red circle on the left .", "image": image} for image in images]

    def collate(samples):
        batch = processor(text=[s["text"] for s in samples], images=[[s["image"]] for s in samples],
                          return_tensors="pt", padding=True)
        batch["labels"] = processor.create_labels(batch["input_ids"], batch["attention_mask"])
        return batch

    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=4, learning_rate=1e-2,
        report_to=[], remove_unused_columns=False, save_strategy="no", logging_steps=1, use_cpu=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
    trainer.train()
    after = dict(model.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name].detach())}
    assert changed and all(name.startswith(("model.vision_model.", "model.visual_prefix.")) for name in changed)
    assert any(name.startswith("model.visual_prefix.") for name in changed)
    for name, tensor in language_model_state(model).items():
        assert torch.equal(tensor, lm_before[name]), name


def test_loss_equals_hand_computation(processor, model):
    batch = few_shot_batch(processor)
    labels = processor.create_labels(batch["input_ids"], batch["attention_mask"])
    loss = model(**batch, labels=labels).loss

    input_ids = batch["input_ids"]
    placeholder = input_ids == model.config.image_token_id
    prefix = model.get_image_features(batch["pixel_values"]).pooler_output.reshape(-1, model.config.text_config.hidden_size)
    token_embeddings = model.get_input_embeddings()(input_ids.masked_fill(placeholder, 0))
    rows = []
    next_prefix = 0
    for sample in range(input_ids.shape[0]):
        row = []
        for position in range(input_ids.shape[1]):
            if placeholder[sample, position]:
                row.append(prefix[next_prefix])
                next_prefix += 1
            else:
                row.append(token_embeddings[sample, position])
        rows.append(torch.stack(row))
    inputs_embeds = torch.stack(rows)
    hidden = model.model.language_model(inputs_embeds=inputs_embeds, attention_mask=batch["attention_mask"]).last_hidden_state
    logits = model.lm_head(hidden)
    targets = input_ids.clone()
    targets[placeholder | (batch["attention_mask"] == 0)] = -100
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(labels, targets)


@pytest.mark.parametrize("num_items_in_batch", [None, 7])
def test_loss_without_logits_equals_the_full_loss(processor, num_items_in_batch):
    # return_logits=False runs the LM head at target positions only; loss and gradients must not change.
    batch = few_shot_batch(processor)
    labels = processor.create_labels(batch["input_ids"], batch["attention_mask"])
    extra = {} if num_items_in_batch is None else {"num_items_in_batch": torch.tensor(num_items_in_batch)}
    results = []
    for return_logits in (True, False):
        model = tiny_model(processor).train()
        output = model(**batch, labels=labels, return_logits=return_logits, **extra)
        output.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((output, grads))
    (full, full_grads), (lean, lean_grads) = results
    assert lean.logits is None and full.logits is not None
    torch.testing.assert_close(lean.loss, full.loss)
    assert full_grads.keys() == lean_grads.keys() and full_grads
    for name in full_grads:
        torch.testing.assert_close(lean_grads[name], full_grads[name], msg=name)


def test_generate_with_cache_equals_without(processor, model):
    batch = few_shot_batch(processor)
    cached = model.generate(**batch, max_new_tokens=6, do_sample=False)
    uncached = model.generate(**batch, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)


def test_left_padded_batch_equals_each_sample_alone(processor, model):
    images = random_images(3)
    texts = ["<image> this is a dax . <image> this is a", "<image> a red"]
    per_sample = [images[:2], images[2:]]
    batch = processor(text=texts, images=per_sample, return_tensors="pt", padding=True)
    batched = model.generate(**batch, max_new_tokens=5, do_sample=False)
    width = batch["input_ids"].shape[1]
    for index, (text, sample_images) in enumerate(zip(texts, per_sample)):
        single = processor(text=[text], images=[sample_images], return_tensors="pt")
        alone = model.generate(**single, max_new_tokens=5, do_sample=False)
        assert torch.equal(batched[index, width:], alone[0, single["input_ids"].shape[1]:])


def test_beams_with_different_image_counts_equal_each_sample_alone(processor, model):
    images = random_images(3, seed=3)
    texts = ["<image> this is a dax . <image> this is a", "<image> a red"]
    per_sample = [images[:2], images[2:]]
    batch = processor(text=texts, images=per_sample, return_tensors="pt", padding=True)
    kwargs = dict(max_new_tokens=4, do_sample=False, num_beams=3, num_return_sequences=2)
    batched = model.generate(**batch, **kwargs)
    width = batch["input_ids"].shape[1]
    for index, (text, sample_images) in enumerate(zip(texts, per_sample)):
        single = processor(text=[text], images=[sample_images], return_tensors="pt")
        alone = model.generate(**single, **kwargs)
        assert torch.equal(batched[2 * index : 2 * index + 2, width:], alone[:, single["input_ids"].shape[1]:])


def test_saved_and_reloaded_logits_identical(processor, model, tmp_path):
    batch = few_shot_batch(processor)
    model.save_pretrained(tmp_path)
    reloaded = FrozenForConditionalGeneration.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reloaded(**batch).logits)


@pytest.mark.parametrize("vision", ["resnet", "convnext", "vit", "clip"])
@pytest.mark.parametrize("text", ["llama", "gpt2"])
def test_backbones_forward_train_step_generate(processor, vision, text):
    model = tiny_model(processor, vision=vision, text=text)
    batch = few_shot_batch(processor)
    labels = processor.create_labels(batch["input_ids"], batch["attention_mask"])
    model.train()
    loss = model(**batch, labels=labels).loss
    loss.backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert any(name.startswith("model.vision_model.") for name in with_grad)
    assert all(name.startswith(("model.vision_model.", "model.visual_prefix.")) for name in with_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    before = model.model.visual_prefix.linear.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, model.model.visual_prefix.linear.weight)
    model.eval()
    generated = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert generated.shape == (2, batch["input_ids"].shape[1] + 3)


TIMM_CHECK = """
import torch
from transformers import TimmWrapperConfig
import timm
from frozen_hf import FrozenConfig, FrozenForConditionalGeneration

config = FrozenConfig(
    vision_config=TimmWrapperConfig(architecture="nf_resnet50", num_classes=0),
    text_config={"model_type": "llama", "vocab_size": 40, "hidden_size": 32, "intermediate_size": 64,
                 "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2},
    image_token_id=40,
)
model = FrozenForConditionalGeneration(config)
assert config.vision_feature_dim == timm.create_model("nf_resnet50", num_classes=0).num_features == 2048
input_ids = torch.tensor([[40, 40, 3, 4, 5]])
loss = model(input_ids=input_ids, pixel_values=torch.randn(1, 3, 64, 64), labels=input_ids).loss
loss.backward()
trained = {n for n, p in model.named_parameters() if p.grad is not None}
assert any(n.startswith("model.vision_model.timm_model.") for n in trained)
assert all(n.startswith(("model.vision_model.", "model.visual_prefix.")) for n in trained)
model.eval()
assert model.generate(input_ids=input_ids, pixel_values=torch.randn(1, 3, 64, 64), max_new_tokens=2).shape == (1, 7)
print("timm ok")
"""


def test_timm_backbone_nf_resnet50():
    """The paper's backbone through transformers' TimmWrapper: in this interpreter when timm imports, else in the
    `.venv-timm` that scripts/setup_timm.sh builds (timm needs a torchvision that the CPU torch build lacks)."""
    root = Path(__file__).resolve().parents[1]
    try:
        import timm  # noqa: F401

        interpreter = sys.executable
    except ImportError:
        interpreter = str(root / ".venv-timm" / "bin" / "python")
        if not Path(interpreter).exists():
            pytest.skip("timm is not installed: run scripts/setup_timm.sh")
    result = subprocess.run([interpreter, "-c", TIMM_CHECK], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0 and "timm ok" in result.stdout, result.stderr[-3000:]


def test_eager_and_sdpa_agree_on_non_pad_positions(processor, tmp_path):
    model = tiny_model(processor)
    model.save_pretrained(tmp_path)
    batch = few_shot_batch(processor)
    logits = {}
    for implementation in ("eager", "sdpa"):
        loaded = FrozenForConditionalGeneration.from_pretrained(tmp_path, attn_implementation={"text_config": implementation})
        assert loaded.config.text_config._attn_implementation == implementation
        with torch.no_grad():
            logits[implementation] = loaded(**batch).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(logits["eager"][real], logits["sdpa"][real], rtol=1e-4, atol=1e-5)


def test_activation_checkpointing_gives_same_gradients(processor):
    batch = few_shot_batch(processor)
    labels = processor.create_labels(batch["input_ids"], batch["attention_mask"])
    gradients = []
    for checkpointing in (False, True):
        model = tiny_model(processor, seed=7)
        if checkpointing:
            # transformers < 5.23 names it `gradient_checkpointing_enable`; both end in `_set_gradient_checkpointing`.
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable()
            assert model.model.language_model.gradient_checkpointing
        model.train()
        model(**batch, labels=labels).loss.backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys()
    for name in gradients[0]:
        torch.testing.assert_close(gradients[0][name], gradients[1][name])


def test_bfloat16_forward_and_generate(processor):
    model = tiny_model(processor).to(torch.bfloat16)
    batch = few_shot_batch(processor)
    batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
    assert model(**batch).logits.dtype == torch.bfloat16
    assert model.generate(**batch, max_new_tokens=2, do_sample=False).shape[1] == batch["input_ids"].shape[1] + 2


def test_prefix_placed_exactly_at_placeholders(processor, model):
    batch = few_shot_batch(processor)
    captured = {}
    hook = model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: captured.update(embeds=kwargs["inputs_embeds"]), with_kwargs=True
    )
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        hook.remove()
    prefix = model.get_image_features(batch["pixel_values"]).pooler_output
    mask = batch["input_ids"] == model.config.image_token_id
    placed = captured["embeds"][mask].reshape(prefix.shape)
    assert torch.equal(placed, prefix)


# --- bad input ---------------------------------------------------------------------------------------------------


def test_processor_and_config_prefix_lengths_disagree(processor, model):
    other = tiny_processor(visual_prefix_length=4)
    batch = other(text=["<image> a red"], images=random_images(1), return_tensors="pt")
    with pytest.raises(ValueError, match="visual_prefix_length=2"):
        model(**batch)


def test_pixel_values_of_wrong_shape(processor, model):
    batch = few_shot_batch(processor)
    with pytest.raises(ValueError, match=r"pixel_values must have shape \(num_images, 3, height, width\)"):
        model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"][:, 0])
    with pytest.raises(ValueError, match="pixel_values must be a torch.Tensor"):
        model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"].numpy())


def test_placeholders_without_images(processor, model):
    batch = few_shot_batch(processor)
    with pytest.raises(ValueError, match="no pixel_values were given"):
        model(input_ids=batch["input_ids"])


def test_too_few_images_for_placeholders(processor, model):
    batch = few_shot_batch(processor)
    with pytest.raises(ValueError, match="Found 6 image placeholder tokens for 2 images"):
        model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"][:2])


def test_invalid_visual_prefix_length_in_config():
    with pytest.raises(ValueError, match="visual_prefix_length must be an int >= 1"):
        FrozenConfig(visual_prefix_length=0)


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf")])
def test_invalid_visual_prefix_rms_in_config(value):
    message = (
        "visual_prefix_rms must be a positive number (the root mean square each prefix embedding is rescaled to) "
        f"or None, got {value!r}."
    )
    with pytest.raises(ValueError) as raised:
        FrozenConfig(visual_prefix_rms=value)
    assert message in str(raised.value)


def test_visual_prefix_rms_rescales_each_prefix_embedding_and_survives_reloading(processor, tmp_path):
    model = tiny_model(processor, visual_prefix_rms=0.25)
    pixel_values = processor.image_processor(random_images(3), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        prefix = model.get_image_features(pixel_values).pooler_output
        unscaled = model.model.visual_prefix.linear(
            model.model.vision_model(pixel_values).pooler_output.flatten(1)
        ).view_as(prefix)
    torch.testing.assert_close(prefix.pow(2).mean(-1).sqrt(), torch.full(prefix.shape[:2], 0.25), rtol=1e-3, atol=0)
    # Rescaling keeps each embedding's direction.
    torch.testing.assert_close(F.cosine_similarity(prefix, unscaled, dim=-1), torch.ones(prefix.shape[:2]))
    assert not torch.allclose(unscaled.pow(2).mean(-1).sqrt(), torch.full(prefix.shape[:2], 0.25), rtol=0.1)
    batch = few_shot_batch(processor)
    model.save_pretrained(tmp_path)
    reloaded = FrozenForConditionalGeneration.from_pretrained(tmp_path)
    assert reloaded.config.visual_prefix_rms == 0.25 and reloaded.model.visual_prefix.target_rms == 0.25
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reloaded(**batch).logits)
        assert not torch.equal(model(**batch).logits, tiny_model(processor)(**batch).logits)


def test_centered_prefix_subtracts_the_batch_mean_in_training_and_the_running_mean_after(processor, tmp_path):
    model = tiny_model(processor, visual_prefix_centered=True)
    visual_prefix = model.model.visual_prefix
    pixel_values = processor.image_processor(random_images(4), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        model.train()
        pooled = model.model.vision_model(pixel_values).pooler_output.flatten(1)
        training_prefix = model.get_image_features(pixel_values).pooler_output
        uncentered = visual_prefix.linear(pooled)
    batch_mean = uncentered.mean(0)
    torch.testing.assert_close(training_prefix.flatten(1), uncentered - batch_mean)
    torch.testing.assert_close(visual_prefix.running_mean, 0.1 * batch_mean)
    model.eval()
    with torch.no_grad():
        pooled = model.model.vision_model(pixel_values).pooler_output.flatten(1)
        eval_prefix = model.get_image_features(pixel_values).pooler_output
        alone = torch.cat([model.get_image_features(pixel_values[i : i + 1]).pooler_output for i in range(4)])
    torch.testing.assert_close(eval_prefix.flatten(1), visual_prefix.linear(pooled) - 0.1 * batch_mean)
    torch.testing.assert_close(alone, eval_prefix)
    batch = few_shot_batch(processor)
    model.save_pretrained(tmp_path)
    reloaded = FrozenForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.equal(reloaded.model.visual_prefix.running_mean, visual_prefix.running_mean)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reloaded(**batch).logits)


def test_from_language_model_matches_the_word_embedding_scale(processor, tmp_path):
    from transformers import LlamaForCausalLM

    from tests.helpers.tiny import tiny_text_config

    torch.manual_seed(0)
    language_model = LlamaForCausalLM(tiny_text_config())
    language_model.save_pretrained(tmp_path)
    processor.tokenizer.save_pretrained(tmp_path)
    rows = language_model.get_input_embeddings().weight.detach()
    expected = torch.stack([row.pow(2).mean().sqrt() for row in rows]).mean().item()
    model = FrozenForConditionalGeneration.from_language_model(tmp_path, visual_prefix_rms="match")
    assert model.config.visual_prefix_rms == pytest.approx(expected, rel=1e-5)
    assert model.model.visual_prefix.target_rms == model.config.visual_prefix_rms
    assert FrozenForConditionalGeneration.from_language_model(tmp_path).config.visual_prefix_rms is None


def test_word_embedding_scale_of_an_lm_that_scales_its_embeddings():
    from transformers import Gemma3ForCausalLM

    from frozen_hf.loading_frozen import word_embedding_rms
    from tests.helpers.tiny import tiny_text_config

    torch.manual_seed(0)
    language_model = Gemma3ForCausalLM(tiny_text_config("gemma3"))
    rows = language_model.get_input_embeddings().weight.detach()
    # Gemma multiplies every row by sqrt(hidden_size) in its embedding's forward; that is the scale the LM reads.
    expected = torch.stack([row.pow(2).mean().sqrt() for row in rows]).mean().item() * 32**0.5
    assert word_embedding_rms(language_model) == pytest.approx(expected, rel=1e-4)


def test_config_round_trip_keeps_sub_configs(processor, tmp_path):
    config = tiny_config(processor, vision="convnext", text="gpt2", visual_prefix_length=4)
    config.save_pretrained(tmp_path)
    loaded = FrozenConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.vision_config.model_type == "convnext" and loaded.text_config.model_type == "gpt2"
    assert copy.deepcopy(loaded).visual_prefix_length == 4


# The conventions native transformers models meet, each checked the way a user's call meets it.


def test_output_loading_info_returns_model_and_info(model, tmp_path):
    model.save_pretrained(tmp_path)
    reloaded, info = FrozenForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(reloaded, FrozenForConditionalGeneration)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not any(p.requires_grad for p in reloaded.model.language_model.parameters())


@pytest.mark.parametrize("model_class", [FrozenModel, FrozenForConditionalGeneration])
def test_return_dict_false_gives_the_same_tensors_as_a_tuple(processor, model_class):
    batch = few_shot_batch(processor)
    model = model_class(tiny_config(processor)).eval()
    with torch.no_grad():
        as_dict = model(**batch)
        as_tuple = model(**batch, return_dict=False)
        model.config.return_dict = False
        from_config = model(**batch)
    first = as_dict.logits if model_class is FrozenForConditionalGeneration else as_dict.last_hidden_state
    for output in (as_tuple, from_config):
        assert isinstance(output, tuple)
        torch.testing.assert_close(output[0], first, rtol=0, atol=0)


def test_cache_under_its_older_name_continues_decoding(processor, model):
    batch = few_shot_batch(processor)
    with torch.no_grad():
        prefill = model(**batch, use_cache=True)
        next_token = prefill.logits[:, -1:].argmax(-1)
        mask = torch.cat([batch["attention_mask"], torch.ones_like(next_token)], dim=1)
        cache = getattr(prefill, "cache", None) or prefill.past_key_values
        step = model(input_ids=next_token, attention_mask=mask, past_key_values=cache)
        full = model(
            input_ids=torch.cat([batch["input_ids"], next_token], dim=1),
            pixel_values=batch["pixel_values"],
            attention_mask=mask,
        )
    torch.testing.assert_close(step.logits[:, -1], full.logits[:, -1], rtol=1e-4, atol=1e-5)


def test_inputs_embeds_with_images_in_forward_and_generate(processor, model):
    batch = few_shot_batch(processor)
    inputs_embeds = model.model.embed_tokens(batch["input_ids"])
    with torch.no_grad():
        from_ids = model(**batch).logits
        from_embeds = model(
            inputs_embeds=inputs_embeds, pixel_values=batch["pixel_values"], attention_mask=batch["attention_mask"]
        ).logits
    torch.testing.assert_close(from_embeds, from_ids)
    generated_from_ids = model.generate(**batch, max_new_tokens=5, do_sample=False)
    generated_from_embeds = model.generate(
        inputs_embeds=inputs_embeds,
        pixel_values=batch["pixel_values"],
        attention_mask=batch["attention_mask"],
        max_new_tokens=5,
        do_sample=False,
    )
    # With inputs_embeds, generate returns only the new tokens.
    assert torch.equal(generated_from_embeds, generated_from_ids[:, batch["input_ids"].shape[1]:])


def test_assisted_decoding_with_images_equals_greedy(processor, model):
    # transformers' assisted decoding takes one sample at a time.
    batch = processor(
        text=["<image> this is a dax . <image> this is a"], images=[random_images(2)], return_tensors="pt"
    )
    # A different random model, so that the main model must reject some of the assistant's tokens.
    assistant = tiny_model(processor, seed=1)
    greedy = model.generate(**batch, max_new_tokens=6, do_sample=False)
    assisted = model.generate(**batch, max_new_tokens=6, do_sample=False, assistant_model=assistant)
    assert torch.equal(assisted, greedy)


def test_image_features_follow_the_output_conventions(processor):
    pixel_values = few_shot_batch(processor)["pixel_values"]
    config = tiny_config(processor, vision="vit")
    config.vision_config._attn_implementation = "eager"  # sdpa returns no attention weights
    model = FrozenModel(config).eval()
    with torch.no_grad():
        vision = model.vision_model(pixel_values=pixel_values, output_hidden_states=True, output_attentions=True)
        features = model.get_image_features(pixel_values, output_hidden_states=True, output_attentions=True)
        as_tuple = model.get_image_features(pixel_values, return_dict=False)
    torch.testing.assert_close(features.last_hidden_state, vision.last_hidden_state)
    assert features.pooler_output.shape == (3, model.config.visual_prefix_length, model.config.text_config.hidden_size)
    assert len(features.hidden_states) == len(vision.hidden_states)
    assert len(features.attentions) == model.config.vision_config.num_hidden_layers
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], vision.last_hidden_state)
    torch.testing.assert_close(as_tuple[1], features.pooler_output)


def test_tensor_parallel_plan_covers_the_head(model):
    assert FrozenForConditionalGeneration._tp_plan == {"lm_head": "colwise_gather_output"}
    # Beside the language model's own entries, under its place in the Frozen model.
    plan = model.tp_plan if hasattr(model, "tp_plan") else model._tp_plan
    assert "lm_head" in plan
    assert any(key.startswith("model.language_model.") for key in plan)


@pytest.mark.parametrize("device_map", ["auto", "offload"])
def test_device_map_gives_the_same_logits_and_tokens(processor, model, tmp_path, device_map):
    model.save_pretrained(tmp_path / "saved")
    kwargs = {"device_map": device_map}
    if device_map == "offload":
        # The frozen LM's embeddings, layers and head offloaded to disk: accelerate's hooks load each on its call.
        kwargs["device_map"] = {
            "model.vision_model": "cpu", "model.visual_prefix": "cpu", "model.language_model.embed_tokens": "disk",
            "model.language_model.layers": "disk", "model.language_model.norm": "cpu",
            "model.language_model.rotary_emb": "cpu", "lm_head": "disk",
        }
        kwargs["offload_folder"] = str(tmp_path / "offload")
    loaded = FrozenForConditionalGeneration.from_pretrained(tmp_path / "saved", **kwargs)
    if device_map == "offload":
        assert loaded.hf_device_map == kwargs["device_map"]
        assert loaded.model.language_model.layers[0].mlp.up_proj.weight.device.type == "meta"
    assert not any(p.requires_grad for p in loaded.model.language_model.parameters())
    batch = few_shot_batch(processor)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)
    generate = dict(max_new_tokens=4, do_sample=False)
    assert torch.equal(loaded.generate(**batch, **generate), model.generate(**batch, **generate))
