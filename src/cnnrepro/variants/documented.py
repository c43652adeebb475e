"""The documented figures, in one cited table. Every other number in the report comes from a run.

Source: ../shared/reference/book-figures.md, which quotes the source texts in ../shared/reference/sources/.
"documented" is what the text states; "printed" is what the first-edition notebook printed at its
LAST epoch (Keras 2.0.8, one GK210 GPU), where there is one: the model the run ended with, as the
port's figures are (book-figures.md gives the previous epoch's value too where it differs).
"""

from __future__ import annotations

from dataclasses import dataclass

DLWP = "Deep Learning with Python, 1st ed., ch. 5 (Chollet, 2017)"
DLWP_CH2 = "Deep Learning with Python, 1st ed., ch. 2 (Chollet, 2017)"
D2L = "Dive into Deep Learning, LeNet (Zhang et al.)"
KERAS_EXAMPLE = "Keras example: image classification from scratch (Chollet)"


@dataclass(frozen=True)
class DocumentedFigure:
    variant: str
    dataset: str
    metric: str  # "val_accuracy" or "test_accuracy": the split the source reports
    documented: float | None  # as a fraction; None where the source documents no accuracy
    documented_text: str  # how the source words it
    printed: float | None  # the first-edition notebook's figure at its last epoch
    source: str


DOCUMENTED: dict[str, DocumentedFigure] = {
    f.variant: f
    for f in [
        DocumentedFigure("baseline", "dogs_vs_cats", "val_accuracy", 0.71, '71% ("stalls at 70-72%")', 0.724, DLWP),
        DocumentedFigure(
            "augmentation", "dogs_vs_cats", "val_accuracy", 0.82, "82% (86-87% with more tuning)", 0.8439, DLWP
        ),
        DocumentedFigure(
            "feature_extraction", "dogs_vs_cats", "val_accuracy", 0.90, "90% (ch. 5.2 intro: 90-93%)", 0.903, DLWP
        ),
        DocumentedFigure("feature_extraction_augmented", "dogs_vs_cats", "val_accuracy", 0.96, "96%", 0.951, DLWP),
        DocumentedFigure("fine_tuning", "dogs_vs_cats", "test_accuracy", 0.97, "97%", 0.968, DLWP),
        DocumentedFigure(
            "mnist_convnet",
            "mnist",
            "test_accuracy",
            0.9908,
            "99.08% (one source), 99.29% (another), 99.1-99.3%",
            0.9913,
            DLWP,
        ),
        DocumentedFigure("mnist_dense", "mnist", "test_accuracy", 0.978, "97.8%", 0.9777, DLWP_CH2),
        DocumentedFigure(
            "lenet", "fashion_mnist", "test_accuracy", 0.783, "78.3% (third-party reruns: 74% to 82%)", None, D2L
        ),
        DocumentedFigure(
            "cam_convnet",
            "petimages_80_20",
            "val_accuracy",
            None,
            "no accuracy documented (used for class activation maps)",
            None,
            KERAS_EXAMPLE,
        ),
    ]
}
