"""MNIST / Fashion-MNIST networks: the DLWP convnet (ch. 5.1), the DLWP dense net (ch. 2), d2l's LeNet."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnnrepro.train.backends.torch.models.layers import Conv2d, Dense, KerasSequential, keras_init_


def mnist_convnet() -> nn.Sequential:
    """Conv32-Pool-Conv64-Pool-Conv64-Flatten-Dense64-Dense10 on 28x28x1; 93,322 parameters."""
    return keras_init_(
        KerasSequential(
            OrderedDict(
                [
                    ("conv2d_1", Conv2d(1, 32, 3)),
                    ("max_pooling2d_1", nn.MaxPool2d(2)),
                    ("conv2d_2", Conv2d(32, 64, 3)),
                    ("max_pooling2d_2", nn.MaxPool2d(2)),
                    ("conv2d_3", Conv2d(64, 64, 3)),
                    ("flatten_1", nn.Flatten()),
                    ("dense_1", Dense(3 * 3 * 64, 64, activation="relu")),
                    ("dense_2", Dense(64, 10)),
                ]
            )
        )
    )


def mnist_dense() -> nn.Sequential:
    """Dense512-ReLU-Dense10 on the 784 flattened pixels (DLWP ch. 2); 407,050 parameters."""
    return keras_init_(
        nn.Sequential(
            OrderedDict(
                [
                    ("flatten", nn.Flatten()),
                    ("dense_1", Dense(28 * 28, 512, activation="relu")),
                    ("dense_2", Dense(512, 10)),
                ]
            )
        )
    )


def lenet() -> nn.Sequential:
    """LeNet-5 exactly as d2l builds it (sigmoid, average pooling); 61,706 parameters.

    d2l's init_weights applies xavier_uniform_ to the weights of Linear and Conv2d only: the
    biases keep PyTorch's default uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), as here.
    """
    net = nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2),
        nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.Sigmoid(),
        nn.Linear(120, 84),
        nn.Sigmoid(),
        nn.Linear(84, 10),
    )
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(module.weight)
    return net
