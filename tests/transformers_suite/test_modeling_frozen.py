"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`, `PipelineTesterMixin` of the installed
release) on `FrozenModel` and `FrozenForConditionalGeneration`, with a tester built as llava's
`tests/models/llava/test_modeling_llava.py` builds its own."""

from __future__ import annotations

import unittest
from unittest import mock

import torch
from transformers import CLIPVisionConfig, LlamaConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES, MODEL_MAPPING_NAMES
from transformers.testing_utils import require_torch, torch_device
from transformers_tests.test_configuration_common import ConfigTester
from transformers_tests.test_modeling_common import ModelTesterMixin, floats_tensor, ids_tensor
from transformers_tests.test_pipeline_mixin import PipelineTesterMixin

from frozen_hf import FrozenConfig, FrozenForConditionalGeneration, FrozenModel


class FrozenModelTester:
    """A tiny random Frozen model (CLIP vision tower, Llama LM) and inputs with one image per sample."""

    # Seven samples: the eager-vs-sdpa tests pad a batch to seven rows with random ids and random pixel values, which
    # would leave the added images without placeholders; at seven rows every image has its own.
    def __init__(self, parent, batch_size: int = 7, text_length: int = 7, visual_prefix_length: int = 2):
        self.parent = parent
        self.batch_size = batch_size
        self.pad_token_id = 1
        self.vocab_size = 99
        # Outside the vocabulary, as SmolLM2's `<image>` is: a suite test that draws random ids never draws it.
        self.image_token_id = self.vocab_size
        self.visual_prefix_length = visual_prefix_length
        self.text_config = LlamaConfig(
            vocab_size=self.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=37, hidden_act="gelu", max_position_embeddings=512,
            initializer_range=0.02,
            pad_token_id=self.pad_token_id, bos_token_id=2, eos_token_id=2,
        )
        self.vision_config = CLIPVisionConfig(
            image_size=8, patch_size=2, num_channels=3, hidden_size=32, projection_dim=32, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=37, dropout=0.1, attention_dropout=0.1, initializer_range=0.02,
        )
        # What the common tests read off a tester.
        self.is_training = True
        self.num_hidden_layers = self.text_config.num_hidden_layers
        self.hidden_size = self.text_config.hidden_size
        self.num_attention_heads = self.text_config.num_attention_heads
        self.seq_length = text_length + visual_prefix_length
        self.encoder_seq_length = self.seq_length

    def get_config(self) -> FrozenConfig:
        return FrozenConfig(
            text_config=self.text_config.to_dict(),
            vision_config=self.vision_config.to_dict(),
            visual_prefix_length=self.visual_prefix_length,
            image_token_id=self.image_token_id,
        )

    def prepare_config_and_inputs(self):
        size = self.vision_config.image_size
        pixel_values = floats_tensor([self.batch_size, self.vision_config.num_channels, size, size])
        return self.get_config(), pixel_values

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values = self.prepare_config_and_inputs()
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 2) + 2
        input_ids[:, : self.visual_prefix_length] = self.image_token_id
        attention_mask = torch.ones(input_ids.shape, dtype=torch.long, device=torch_device)
        return config, {"pixel_values": pixel_values, "input_ids": input_ids, "attention_mask": attention_mask}


@require_torch
class FrozenForConditionalGenerationModelTest(ModelTesterMixin, PipelineTesterMixin, unittest.TestCase):
    all_model_classes = (FrozenModel, FrozenForConditionalGeneration)
    pipeline_model_mapping = {"image-text-to-text": FrozenForConditionalGeneration}
    # The eager-vs-sdpa and padding tests pass only the main input and these: with the images, they run the model.
    additional_model_inputs = ["pixel_values"]
    _is_composite = True

    @classmethod
    def setUpClass(cls):
        # The mixin tells a base model (no head, no loss) and a VLM (labels) by their names in transformers' tables of
        # native models. `AutoModel.register` keeps a registered family out of those tables, so the tester adds the
        # entries a native family has there, for the duration of these tests.
        cls._native_table_entries = [
            mock.patch.dict(MODEL_MAPPING_NAMES, {FrozenConfig.model_type: FrozenModel.__name__}),
            mock.patch.dict(
                MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
                {FrozenConfig.model_type: FrozenForConditionalGeneration.__name__},
            ),
        ]
        for entry in cls._native_table_entries:
            entry.start()

    @classmethod
    def tearDownClass(cls):
        for entry in cls._native_table_entries:
            entry.stop()

    def setUp(self):
        self.model_tester = FrozenModelTester(self)
        self.config_tester = ConfigTester(
            self, config_class=FrozenConfig, has_text_modality=False,
            common_properties=["image_token_id", "visual_prefix_length"],
        )

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        # The resize tests clamp every id below a shrunk vocabulary, which erases the placeholders (their id lies
        # outside it); the images then have no place in the text, and the model refuses them. Those forwards run on
        # the text alone, as they would for a text model.
        input_ids = inputs.get("input_ids")
        placeholders_erased = input_ids is not None and not (input_ids == self.model_tester.image_token_id).any()
        if placeholders_erased and "pixel_values" in inputs:
            inputs.pop("pixel_values")
        return inputs

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip(
        reason="llava skips it too (test_training_gradient_checkpointing_use_reentrant). Frozen refuses reentrant "
        "checkpointing by design: it gives no gradient to a trainable layer above a frozen one. The refusal is tested "
        "in tests/train/test_checkpointing.py."
    )
    def test_training_gradient_checkpointing_use_reentrant_true(self):
        pass

    @unittest.skip(
        reason="Not one of llava's skips: the release's sdist ships no tests/generation/test_utils.py, so "
        "GenerationTesterMixin is an empty stand-in, and inheriting it would pass this check with no generate test "
        "run. The family's generate() is tested in tests/test_modeling.py."
    )
    def test_generation_tester_mixin_inheritance(self):
        pass
