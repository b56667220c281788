"""Generative classification with diffusion (or AR) likelihoods, its discriminative baseline, and the metrics.

    clf = dlm.classify.load_classifier("default-classifier")     # bundled, a folder, or a Hub repo
    [p] = clf.classify(["A gripping, moving film."])
    p.label, p.probabilities, p.contributions, p.nfe

A generative classifier applies Bayes' rule,  p(c | x) ∝ p(x | c) p(c),  with p(x | c) from one
model per class (`per-class`) or one model given a class prompt such as "positive:" (`conditional`;
the zero-shot classifier is this design with an un-tuned model). For a masked model log p(x | c) is
a Monte-Carlo ELBO drawn with the same masks for every class (common random numbers) until the top
class leads clearly; for a causal model it is exact. Probabilities are calibrated by temperature
scaling.

Which module holds what:

    dlm.classify.scoring       log p(text | class) as per-token terms: `framing` (the tokens around
                               prompt + text, shared with training), the Monte-Carlo ELBO with common
                               random numbers and adaptive stopping (`score_masked`, `masked_terms`,
                               `settled`) and the exact causal likelihood (`score_causal`, `causal_terms`)
    dlm.classify.prediction    what a classifier returns (`Prediction`) and offers (the `Classifier` protocol)
    dlm.classify.classifiers   the classifier objects: `GenerativeClassifier`, `ZeroShotClassifier`, `DiscriminativeClassifier`,
                               and loading a trained one (`load_classifier`, `bundled_classifiers`,
                               `CONFIG_FILE`, `MAX_TOKENS`, `MAX_PIECES`)
    dlm.classify.calibration   calibration and metrics: `softmax`, `posterior`, `fit_temperature`,
                               `fit_length_temperature`, `expected_calibration_error`, `calibration_report`,
                               `wilson_interval`, `Evaluation`, `evaluate`, `report`

Every name is re-exported here, so `from dlm.classify import load_classifier` works as before.
"""

from dlm.classify.calibration import (
    Evaluation,
    calibration_report,
    evaluate,
    expected_calibration_error,
    fit_length_temperature,
    fit_temperature,
    posterior,
    report,
    softmax,
    wilson_interval,
)
from dlm.classify.classifiers import (
    CONFIG_FILE,
    MAX_PIECES,
    MAX_TOKENS,
    DiscriminativeClassifier,
    GenerativeClassifier,
    ZeroShotClassifier,
    _classifier_folder,  # noqa: F401  (used by bench/classify.py)
    bundled_classifiers,
    load_classifier,
)
from dlm.classify.prediction import Classifier, Prediction
from dlm.classify.scoring import framing

__all__ = [
    "CONFIG_FILE",
    "MAX_PIECES",
    "MAX_TOKENS",
    "Classifier",
    "DiscriminativeClassifier",
    "Evaluation",
    "GenerativeClassifier",
    "Prediction",
    "ZeroShotClassifier",
    "bundled_classifiers",
    "calibration_report",
    "evaluate",
    "expected_calibration_error",
    "fit_length_temperature",
    "fit_temperature",
    "framing",
    "load_classifier",
    "posterior",
    "report",
    "softmax",
    "wilson_interval",
]
