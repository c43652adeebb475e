"""The convnet of the Keras "image classification from scratch" CAM example (300x300, GAP head)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnrepro.train.backends.torch.models.layers import Conv2d, Dense, KerasSequential, keras_init_


class CamConvnet(nn.Module):
    """Conv16-Pool-Conv32-Pool-Conv64-Pool-Conv128 (3x3, same, ReLU) - GlobalAveragePooling - Dense1.

    `features` is the last conv map the class activation map weighs with the Dense kernel.
    97,569 parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = KerasSequential(
            OrderedDict(
                [
                    ("conv2d", Conv2d(3, 16, 3, padding="same")),
                    ("max_pooling2d", nn.MaxPool2d(2)),
                    ("conv2d_1", Conv2d(16, 32, 3, padding="same")),
                    ("max_pooling2d_1", nn.MaxPool2d(2)),
                    ("conv2d_2", Conv2d(32, 64, 3, padding="same")),
                    ("max_pooling2d_2", nn.MaxPool2d(2)),
                    ("conv2d_3", Conv2d(64, 128, 3, padding="same")),
                ]
            )
        )
        self.dense = Dense(128, 1)
        keras_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.features(x).mean(dim=(2, 3)))


def cam_convnet() -> CamConvnet:
    return CamConvnet()
