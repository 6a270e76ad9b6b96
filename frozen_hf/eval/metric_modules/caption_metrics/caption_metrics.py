"""Caption BLEU-4 and CIDEr-D as an ``evaluate`` metric; the logic is ``frozen_hf.eval.metrics``.

BLEU comes from ``sacrebleu``; CIDEr-D from ``pycocoevalcap``'s reference scorer (pure Python,
no Java). Both run on COCO-style tokenized, lowercased captions.
"""

from typing import Dict, List, Sequence

import evaluate

from frozen_hf.eval.metrics import caption_scores, metric_module_info

_DESCRIPTION = """\
Corpus caption metrics: BLEU-4 (sacrebleu, 0-100) and CIDEr-D (pycocoevalcap, COCO scale where
1.0 = 100), over captions tokenized the COCO way (lowercase, punctuation dropped). Each
prediction may have several reference captions.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: list of str, the generated captions.
    references: list of list of str, the reference captions of each image.
    metrics: list of str, default ["bleu", "cider"].
Returns:
    bleu: float (0-100), if asked for.
    cider: float (COCO scale), if asked for.
Examples:
    >>> metric = evaluate.load("frozen_hf/eval/metric_modules/caption_metrics")
    >>> metric.compute(predictions=["a red square"], references=[["a red square"]], metrics=["bleu"])
"""

_CITATION = """\
@inproceedings{vedantam2015cider,
  title={CIDEr: Consensus-based Image Description Evaluation},
  author={Vedantam, Ramakrishna and Zitnick, C Lawrence and Parikh, Devi},
  booktitle={CVPR},
  year={2015}
}
@inproceedings{post-2018-call,
  title={A Call for Clarity in Reporting {BLEU} Scores},
  author={Post, Matt},
  booktitle={Proceedings of the Third Conference on Machine Translation},
  year={2018}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CaptionMetrics(evaluate.Metric):
    """BLEU-4 and CIDEr-D over a corpus of captions."""

    def _info(self) -> evaluate.MetricInfo:
        return metric_module_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, many_references=True)

    def _compute(
        self,
        predictions: List[str],
        references: List[List[str]],
        metrics: Sequence[str] = ("bleu", "cider"),
    ) -> Dict[str, float]:
        return caption_scores(predictions, references, metrics=metrics)
