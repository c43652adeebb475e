"""`cnnrepro variants`: the named variants with their documented figures and parameter counts."""

from __future__ import annotations

import argparse
import json

from cnnrepro.mappings import JsonObject


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per variant instead of a table")


def rows() -> list[JsonObject]:
    from cnnrepro.train.backends.torch.models import create_model, vgg16
    from cnnrepro.train.backends.torch.models.layers import count_parameters
    from cnnrepro.variants.registry import get_variant, list_variants

    out = []
    for name in list_variants():
        spec = get_variant(name)
        doc = spec.documented
        model = create_model(name)
        vgg16.set_trainable(model, spec.trainable)
        out.append(
            {
                "name": name,
                "dataset": spec.dataset,
                "metric": doc.metric,
                "documented": doc.documented,
                "documented_text": doc.documented_text,
                "source": doc.source,
                "parameters": count_parameters(model),
                "trainable": count_parameters(model, trainable_only=True),
            }
        )
    return out


def format_table(table: list[JsonObject]) -> str:
    header = ("variant", "dataset", "documented", "metric", "parameters", "trainable", "source")
    lines = [
        (
            r["name"],
            r["dataset"],
            f"{r['documented']:.2%}" if r["documented"] is not None else "-",
            r["metric"],
            f"{r['parameters']:,}",
            f"{r['trainable']:,}",
            r["source"],
        )
        for r in table
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    rule = "  ".join("-" * w for w in widths)
    return "\n".join(line.rstrip() for line in [fmt.format(*header), rule, *(fmt.format(*line) for line in lines)])


def main(args: argparse.Namespace) -> int:
    table = rows()
    if args.json:
        for row in table:
            print(json.dumps(row))
    else:
        print(format_table(table))
    return 0
