"""VQA accuracy (VQAv2 / OKVQA) as an ``evaluate`` metric; the logic is ``frozen_hf.eval.metrics``."""

from typing import Any, Dict, List

import evaluate

from frozen_hf.eval.metrics import mean_vqa_accuracy, metric_module_info

_DESCRIPTION = """\
VQA accuracy with the official VQAv2 answer normalization (punctuation, number words, articles,
contractions): for each of the leave-one-annotator-out subsets of the human answers,
min(#humans in the subset who gave the predicted answer / 3, 1), averaged over the subsets.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: list of str, the model's answers (raw generated text is normalized here).
    references: list of list of str, the human answers of each question (10 in VQAv2 / OKVQA).
    official_script: bool, default False. True reproduces vqaEval.py exactly (human answers only
        punctuation-processed and only when they disagree); False normalizes them fully.
Returns:
    vqa_accuracy: float in [0, 1], the mean over questions.
    num_questions: int.
    per_question: list of float.
Examples:
    >>> metric = evaluate.load("frozen_hf/eval/metric_modules/vqa_accuracy")
    >>> metric.compute(predictions=["Two"], references=[["2"] * 10])["vqa_accuracy"]
    1.0
"""

_CITATION = """\
@inproceedings{goyal2017making,
  title={Making the V in VQA Matter: Elevating the Role of Image Understanding in Visual Question Answering},
  author={Goyal, Yash and Khot, Tejas and Summers-Stay, Douglas and Batra, Dhruv and Parikh, Devi},
  booktitle={CVPR},
  year={2017}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VqaAccuracy(evaluate.Metric):
    """VQA accuracy over a set of questions."""

    def _info(self) -> evaluate.MetricInfo:
        return metric_module_info(
            _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, many_references=True,
            reference_urls=["https://visualqa.org/evaluation.html"],
        )

    def _compute(
        self, predictions: List[str], references: List[List[str]], official_script: bool = False
    ) -> Dict[str, Any]:
        return mean_vqa_accuracy(predictions, references, official_script=official_script)
