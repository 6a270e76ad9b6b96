"""Open-ended naming exact match as an ``evaluate`` metric; the logic is ``frozen_hf.eval.metrics``."""

from typing import Any, Dict, List

import evaluate

from frozen_hf.eval.metrics import metric_module_info, open_ended_accuracy

_DESCRIPTION = """\
Exact match for open-ended naming (Open-Ended / Real-Name miniImageNet and their Shapes analogs):
the generated text and the target are lowercased, stripped of edge punctuation and of leading
articles, and the prediction is cut to as many words as the target has (the first word for a
one-word name); then they must be equal.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: list of str, the generated continuations.
    references: list of str, the correct names.
    strip_articles: bool, default True: ignore a leading a/an/the in the generation.
Returns:
    accuracy: float in [0, 1].
    num_examples: int.
    per_example: list of 0/1.
Examples:
    >>> metric = evaluate.load("frozen_hf/eval/metric_modules/open_ended_accuracy")
    >>> metric.compute(predictions=["Dax. This is a blicket."], references=["dax"])["accuracy"]
    1.0
"""

_CITATION = """\
@article{tsimpoukelli2021multimodal,
  title={Multimodal few-shot learning with frozen language models},
  author={Tsimpoukelli, Maria and Menick, Jacob and Cabi, Serkan and Eslami, SM and Vinyals, Oriol and Hill, Felix},
  journal={Proc. Neural Information Processing Systems},
  year={2021}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class OpenEndedAccuracy(evaluate.Metric):
    """Open-ended naming accuracy."""

    def _info(self) -> evaluate.MetricInfo:
        return metric_module_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, many_references=False)

    def _compute(
        self, predictions: List[str], references: List[str], strip_articles: bool = True
    ) -> Dict[str, Any]:
        return open_ended_accuracy(predictions, references, strip_articles=strip_articles)
