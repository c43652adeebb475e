"""The Dogs-vs-Cats convnet of Deep Learning with Python ch. 5 (listings 5.5 and 5.13).

Layer names follow the Keras summary of the book (conv2d_1, max_pooling2d_1, ...), so
activations can be read by the names the book uses.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnnrepro.train.backends.torch.models.layers import Conv2d, Dense, KerasSequential, keras_init_


def small_convnet(*, dropout: float = 0.0) -> nn.Sequential:
    """Conv32-Pool-Conv64-Pool-Conv128-Pool-Conv128-Pool-Flatten-[Dropout]-Dense512-Dense1 at 150x150x3.

    dropout=0.5 is the augmentation variant (Dropout after Flatten adds no parameters).
    """
    layers: list[tuple[str, nn.Module]] = [
        ("conv2d_1", Conv2d(3, 32, 3)),
        ("max_pooling2d_1", nn.MaxPool2d(2)),
        ("conv2d_2", Conv2d(32, 64, 3)),
        ("max_pooling2d_2", nn.MaxPool2d(2)),
        ("conv2d_3", Conv2d(64, 128, 3)),
        ("max_pooling2d_3", nn.MaxPool2d(2)),
        ("conv2d_4", Conv2d(128, 128, 3)),
        ("max_pooling2d_4", nn.MaxPool2d(2)),
        ("flatten_1", nn.Flatten()),
    ]
    if dropout:
        layers.append(("dropout_1", nn.Dropout(dropout)))
    # 150 -> 148 -> 74 -> 72 -> 36 -> 34 -> 17 -> 15 -> 7: a 7x7x128 map, 6,272 features.
    layers += [("dense_1", Dense(7 * 7 * 128, 512, activation="relu")), ("dense_2", Dense(512, 1))]
    return keras_init_(KerasSequential(OrderedDict(layers)))


def baseline() -> nn.Sequential:
    return small_convnet()


def augmentation() -> nn.Sequential:
    return small_convnet(dropout=0.5)
