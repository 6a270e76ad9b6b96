"""transformers' own common processor tests (`ProcessorTesterMixin` of the installed release) on `FrozenProcessor`,
with components built as native processors' testers build theirs."""

from __future__ import annotations

import unittest

from transformers_tests.test_processing_common import ProcessorTesterMixin

from frozen_hf import FrozenImageProcessor, FrozenProcessor
from tests.helpers.tiny import IMAGE_SIZE, tiny_tokenizer


class FrozenProcessorTest(ProcessorTesterMixin, unittest.TestCase):
    processor_class = FrozenProcessor

    @classmethod
    def _setup_tokenizer(cls):
        return tiny_tokenizer()

    @classmethod
    def _setup_image_processor(cls):
        return FrozenImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})

    @staticmethod
    def prepare_processor_dict():
        return {"visual_prefix_length": 2}
