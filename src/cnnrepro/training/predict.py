"""`cnnrepro predict`: label single images with a trained run; one JSON line per image.

Each image is resized and scaled exactly as the run's training inputs were (its run_info.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, type=Path, help="a completed run directory")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def main(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from cnnrepro.training.data import load_image
    from cnnrepro.training.evaluate import input_pipeline, load_trained

    model, config = load_trained(args.run, args.device)
    device = next(model.parameters()).device
    inputs = input_pipeline(config)
    channels, height, width = config["input_shape"]
    classes = config["classes"]
    # Decode all first: a bad image fails the command before anything is printed.
    arrays = [
        load_image(path, (height, width), config["resize_filter"] or "bilinear", channels) for path in args.images
    ]
    with torch.no_grad():
        for path, array in zip(args.images, arrays, strict=True):
            x = torch.from_numpy(np.ascontiguousarray(array[None])).to(device)
            logits = model(inputs(x, train=False)).float()[0]
            if config["loss"] == "binary_crossentropy":
                p = float(torch.sigmoid(logits[0]))
                probabilities = [1 - p, p]
            else:
                probabilities = torch.softmax(logits, 0).tolist()
            best = int(np.argmax(probabilities))
            print(
                json.dumps(
                    {
                        "image": str(path),
                        "label": classes[best],
                        "probability": probabilities[best],
                        "probabilities": dict(zip(classes, probabilities, strict=True)),
                    }
                )
            )
    return 0
