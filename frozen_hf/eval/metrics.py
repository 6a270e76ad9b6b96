"""Answer normalization and scores for the paper's benchmarks: VQA accuracy, open-ended exact match,
and caption BLEU / CIDEr.

This is the one place where the scoring logic lives; the ``evaluate`` modules under
``frozen_hf/eval/metric_modules/`` are thin wrappers that call these functions and describe themselves with
:func:`metric_module_info` (load them with :func:`load_metric`).

VQA accuracy follows the official VQAv2 evaluation script (``vqaEval.py`` of the VQA API,
BSD-2 licence): the same punctuation handling, number-word map, article removal and contraction
map, and the same accuracy: for each of the 10 leave-one-annotator-out subsets of 9 human answers,
``min(#humans in the subset who gave the predicted answer / 3, 1)``, averaged over the 10 subsets.

Shapes caption *attribute* accuracy is defined with the Shapes world in ``frozen_hf.data.shapes``; it is
not repeated here.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Union

if TYPE_CHECKING:  # pragma: no cover
    import evaluate

__all__ = [
    "VQA_ARTICLES",
    "VQA_CONTRACTIONS",
    "VQA_NUMBER_WORDS",
    "VQA_PUNCTUATION",
    "METRIC_NAMES",
    "vqa_process_punctuation",
    "vqa_process_digit_article",
    "normalize_vqa_answer",
    "vqa_accuracy",
    "mean_vqa_accuracy",
    "normalize_open_ended",
    "open_ended_match",
    "open_ended_accuracy",
    "caption_tokenize",
    "bleu_score",
    "cider_score",
    "caption_scores",
    "metric_module_path",
    "load_metric",
    "metric_module_info",
]

# --------------------------------------------------------------------------------------------
# Official VQAv2 answer normalization (tables copied from the official vqaEval.py, quirks kept:
# e.g. "somebody'd" -> "somebodyd" is in the official map and so changes scores identically).
# --------------------------------------------------------------------------------------------

VQA_CONTRACTIONS: Dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}

# The official ``manualMap``: only zero..ten are mapped ("none" counts as 0).
VQA_NUMBER_WORDS: Dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}

VQA_ARTICLES: tuple = ("a", "an", "the")

# Apostrophes and periods are deliberately absent: apostrophes carry contractions, and periods
# are handled by their own rule so that decimals ("3.5") survive.
VQA_PUNCTUATION: tuple = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
    ",", "?", "!",
)

# The official pattern is written "(?!<=\d)(\.)(?!\d)": the first group is a (typo'd) negative
# *lookahead*, not a lookbehind, so in effect a period is removed unless a digit follows it.
# It is kept verbatim so scores match the official script bit for bit.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")


def vqa_process_punctuation(text: str) -> str:
    """Apply the official VQA punctuation rule (``processPunctuation``).

    Each punctuation mark is deleted when it touches a space (``"yes !"``) or when the text holds
    a comma between digits (``"1,000"`` -> ``"1000"``); otherwise it is replaced by a space
    (``"black/white"`` -> ``"black white"``). Then periods not followed by a digit are removed
    (``"yes."`` -> ``"yes"``, ``"3.5"`` unchanged).
    """
    out = text
    has_digit_comma = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for p in VQA_PUNCTUATION:
        # The official script tests the *original* text for each mark, not the running result.
        if (p + " " in text or " " + p in text) or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # The official call passes re.UNICODE (= 32) positionally, i.e. as ``count``: at most 32
    # periods are stripped. Kept for bit-exact scores.
    return _PERIOD_STRIP.sub("", out, 32)


def vqa_process_digit_article(text: str) -> str:
    """Apply the official ``processDigitArticle``: lowercase, number words zero..ten to digits,
    drop the articles a/an/the, expand apostrophe-less contractions (``"dont"`` -> ``"don't"``),
    and collapse whitespace."""
    words: List[str] = []
    for word in text.lower().split():
        word = VQA_NUMBER_WORDS.get(word, word)
        if word not in VQA_ARTICLES:
            words.append(word)
    return " ".join(VQA_CONTRACTIONS.get(w, w) for w in words)


def _vqa_clean_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_vqa_answer(answer: str) -> str:
    """Normalize one answer exactly as the official VQAv2 evaluation does.

    Newlines and tabs become spaces, the text is stripped, then punctuation
    (:func:`vqa_process_punctuation`) and digits/articles/contractions
    (:func:`vqa_process_digit_article`) are processed.

    >>> normalize_vqa_answer("The two dogs.")
    '2 dogs'
    """
    if not isinstance(answer, str):
        raise TypeError(f"a VQA answer must be a str, got {type(answer).__name__}: {answer!r}")
    return vqa_process_digit_article(vqa_process_punctuation(_vqa_clean_whitespace(answer)))


def vqa_accuracy(
    prediction: str,
    answers: Sequence[str],
    *,
    official_script: bool = False,
) -> float:
    """VQA accuracy of one predicted answer against the human answers (10 in VQAv2 and OKVQA).

    For each annotator i, the other annotators' answers form a subset; the subset's score is
    ``min(#answers in it equal to the prediction / 3, 1)``; the result is the mean over the
    subsets. So 1 matching human gives 0.3, 2 give 0.6, 3 give 0.9 and 4 or more give 1.0.

    Args:
        prediction: the model's answer (raw generated text is fine; it is normalized here).
        answers: the human answers. With a single answer the score is plain exact match.
        official_script: reproduce the official ``vqaEval.py`` exactly: there the prediction is
            fully normalized, but the human answers only get the punctuation rule, and only when
            they disagree (the released VQAv2/OKVQA answers are already in normalized form, so
            this rarely changes a score). ``False`` (the default) fully normalizes the human
            answers too, so hand-made or re-used references ("Two", "the dog") score as intended.

    Returns:
        A float in [0, 1].
    """
    if isinstance(answers, str):
        raise TypeError("answers must be a sequence of human answers, not a single str")
    answers = list(answers)
    if not answers:
        raise ValueError("vqa_accuracy needs at least one human answer, got none")
    pred = normalize_vqa_answer(prediction)
    refs = [_vqa_clean_whitespace(a) for a in answers]
    if not official_script:
        refs = [normalize_vqa_answer(a) for a in refs]
    elif len(set(refs)) > 1:
        refs = [vqa_process_punctuation(a) for a in refs]
    if len(refs) == 1:
        return float(pred == refs[0])
    matches = sum(1 for a in refs if a == pred)
    total = 0.0
    for ref in refs:
        # Leave this annotator out: the subset holds the other len(refs) - 1 answers.
        in_subset = matches - (1 if ref == pred else 0)
        total += min(1.0, in_subset / 3.0)
    return total / len(refs)


def mean_vqa_accuracy(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    official_script: bool = False,
) -> Dict[str, Any]:
    """Mean :func:`vqa_accuracy` over a set of questions.

    Returns ``{"vqa_accuracy": mean in [0, 1], "num_questions": n, "per_question": [...]}``.
    (Papers report it x100.)
    """
    _check_same_length(predictions, references)
    scores = [
        vqa_accuracy(p, r, official_script=official_script)
        for p, r in zip(predictions, references)
    ]
    return {
        "vqa_accuracy": sum(scores) / len(scores) if scores else 0.0,
        "num_questions": len(scores),
        "per_question": scores,
    }


# --------------------------------------------------------------------------------------------
# Open-ended naming (Open-Ended / Real-Name miniImageNet, and the Shapes analogs)
# --------------------------------------------------------------------------------------------

_EDGE_PUNCT = string.punctuation + "“”‘’«»…"


def _words(text: str) -> List[str]:
    out = []
    for raw in text.lower().split():
        w = raw.strip(_EDGE_PUNCT)
        if w:
            out.append(w)
    return out


def normalize_open_ended(text: str, num_words: Optional[int] = 1, *, strip_articles: bool = True) -> str:
    """Normalize generated text for open-ended naming.

    The rule (the paper scores open-ended generations, greedy decoding, no answer list; the model
    continues a prompt like ``"... This is a"`` and typically says more than the name):

    1. lowercase; split on whitespace; strip punctuation from both ends of every word
       (``"Dax."`` -> ``"dax"``, ``"'dax',"`` -> ``"dax"``); words that were only punctuation go;
    2. if ``strip_articles``, drop leading articles a/an/the (``"a dax"`` -> ``"dax"``);
    3. keep the first ``num_words`` words (``None`` keeps all) and join them with one space.

    >>> normalize_open_ended("  Blicket. This is a dax.")
    'blicket'
    """
    if not isinstance(text, str):
        raise TypeError(f"open-ended text must be a str, got {type(text).__name__}: {text!r}")
    words = _words(text)
    if strip_articles:
        while words and words[0] in VQA_ARTICLES:
            words = words[1:]
    if num_words is not None:
        words = words[:num_words]
    return " ".join(words)


def open_ended_match(prediction: str, target: str, *, strip_articles: bool = True) -> bool:
    """Exact match for open-ended naming.

    The target is normalized with all its words kept; the prediction is cut to the same number of
    words (so a one-word name such as ``"dax"`` is compared with the first generated word, and a
    multi-word real name such as ``"golden retriever"`` with the first two), both per
    :func:`normalize_open_ended`.
    """
    target_norm = normalize_open_ended(target, None, strip_articles=strip_articles)
    if not target_norm:
        raise ValueError(f"open-ended target {target!r} is empty after normalization")
    n = len(target_norm.split(" "))
    return normalize_open_ended(prediction, n, strip_articles=strip_articles) == target_norm


def open_ended_accuracy(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    strip_articles: bool = True,
) -> Dict[str, Any]:
    """Fraction of :func:`open_ended_match` hits.

    Returns ``{"accuracy": mean in [0, 1], "num_examples": n, "per_example": [0/1, ...]}``.
    """
    _check_same_length(predictions, references)
    hits = [int(open_ended_match(p, t, strip_articles=strip_articles)) for p, t in zip(predictions, references)]
    return {
        "accuracy": sum(hits) / len(hits) if hits else 0.0,
        "num_examples": len(hits),
        "per_example": hits,
    }


# --------------------------------------------------------------------------------------------
# Captions: BLEU (sacrebleu) and CIDEr-D (pycocoevalcap's reference scorer)
# --------------------------------------------------------------------------------------------

# The punctuation tokens the COCO caption evaluation drops after tokenizing.
_COCO_PUNCT_TOKENS = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*|[^\sa-z0-9]")


def caption_tokenize(text: str) -> str:
    """Tokenize a caption the way the COCO caption evaluation does, in pure Python.

    The COCO toolkit runs the Stanford PTB tokenizer (Java) with lowercasing and then drops
    punctuation tokens. This approximates it without Java: lowercase, split words from
    punctuation, drop the same punctuation tokens. Contractions stay one token (``"don't"``),
    where PTB would split them (``"do n't"``); for the short captions here that is the only
    difference that matters, and it affects candidates and references alike.
    """
    tokens = [t for t in _TOKEN_RE.findall(text.lower()) if t not in _COCO_PUNCT_TOKENS]
    return " ".join(tokens)


def _as_reference_lists(references: Sequence[Union[str, Sequence[str]]]) -> List[List[str]]:
    out = []
    for r in references:
        refs = [r] if isinstance(r, str) else list(r)
        if not refs:
            raise ValueError("every prediction needs at least one reference caption")
        out.append(refs)
    return out


def bleu_score(predictions: Sequence[str], references: Sequence[Union[str, Sequence[str]]]) -> float:
    """Corpus BLEU-4 (0-100) with sacrebleu, over COCO-style tokenized captions.

    ``references[i]`` is one caption or a list of captions for ``predictions[i]``; a different
    number of references per prediction is allowed.
    """
    _check_same_length(predictions, references)
    try:
        import sacrebleu
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("BLEU needs the 'sacrebleu' package: pip install sacrebleu") from e
    refs = _as_reference_lists(references)
    hyps = [caption_tokenize(p) for p in predictions]
    width = max(len(r) for r in refs) if refs else 0
    # sacrebleu takes reference *streams*; a missing reference is an empty-string/None slot.
    streams = [[caption_tokenize(r[k]) if k < len(r) else None for r in refs] for k in range(width)]
    # tokenize="none": the text is already tokenized the COCO way above.
    return float(sacrebleu.corpus_bleu(hyps, streams, tokenize="none").score)


def cider_score(predictions: Sequence[str], references: Sequence[Union[str, Sequence[str]]]) -> float:
    """Corpus CIDEr-D (COCO scale, e.g. 1.13 = 113) with pycocoevalcap's reference scorer.

    CIDEr weights n-grams by inverse document frequency over the *reference corpus*, so it needs
    several images: on a single image every n-gram has IDF 0 and the score is 0.
    """
    _check_same_length(predictions, references)
    try:
        from pycocoevalcap.cider.cider import Cider
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "CIDEr needs the 'pycocoevalcap' package (its CIDEr scorer is pure Python, no Java): "
            "pip install pycocoevalcap"
        ) from e
    refs = _as_reference_lists(references)
    gts = {i: [caption_tokenize(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [caption_tokenize(p)] for i, p in enumerate(predictions)}
    if not res:
        return 0.0
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def caption_scores(
    predictions: Sequence[str],
    references: Sequence[Union[str, Sequence[str]]],
    metrics: Iterable[str] = ("bleu", "cider"),
) -> Dict[str, float]:
    """Several caption metrics at once: any of ``"bleu"`` (:func:`bleu_score`) and ``"cider"``
    (:func:`cider_score`)."""
    scorers = {"bleu": bleu_score, "cider": cider_score}
    out: Dict[str, float] = {}
    for name in metrics:
        if name not in scorers:
            raise ValueError(f"unknown caption metric {name!r}; choose from {sorted(scorers)}")
        out[name] = scorers[name](predictions, references)
    return out


def _check_same_length(predictions: Sequence[Any], references: Sequence[Any]) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(references)} references; "
            "pass one reference entry per prediction"
        )


# --------------------------------------------------------------------------------------------
# The `evaluate` modules in this repository, loaded by local path (works offline)
# --------------------------------------------------------------------------------------------

METRIC_NAMES: tuple = ("vqa_accuracy", "open_ended_accuracy", "caption_metrics")


def metric_module_path(name: str, metrics_dir: Optional[Union[str, Path]] = None) -> Path:
    """Folder of the packaged ``evaluate`` module ``name`` (``frozen_hf/eval/metric_modules/<name>``)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric module {name!r}; choose from {list(METRIC_NAMES)}")
    base = Path(metrics_dir) if metrics_dir is not None else Path(__file__).resolve().parent / "metric_modules"
    path = base / name
    if not (path / f"{name}.py").is_file():
        raise FileNotFoundError(
            f"evaluate module {name!r} not found: expected {path / (name + '.py')}. The metric "
            "modules ship with the package in frozen_hf/eval/metric_modules/; reinstall frozen-hf or pass "
            "metrics_dir=<folder holding the modules>."
        )
    return path


def load_metric(name: str, metrics_dir: Optional[Union[str, Path]] = None, **kwargs: Any) -> "evaluate.EvaluationModule":
    """``evaluate.load`` one of the repository's metric modules by local path (no network).

    ``name`` is one of :data:`METRIC_NAMES`; extra keyword arguments go to ``evaluate.load``.
    """
    import evaluate

    return evaluate.load(str(metric_module_path(name, metrics_dir)), **kwargs)


def metric_module_info(
    description: str, citation: str, inputs_description: str, *, many_references: bool, **info: Any
) -> "evaluate.MetricInfo":
    """The ``MetricInfo`` of one of the modules in ``metric_modules/``: the predictions are strings, each reference a
    string or (``many_references``) a list of strings; ``info`` adds other ``MetricInfo`` fields."""
    import datasets
    import evaluate

    reference = datasets.Value("string")
    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=inputs_description,
        features=datasets.Features(
            {
                "predictions": datasets.Value("string"),
                "references": datasets.Sequence(reference) if many_references else reference,
            }
        ),
        **info,
    )
