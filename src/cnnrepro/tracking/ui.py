"""How the MLflow UI shows our experiment: the classic model-training view, straight on the runs page.

MLflow 3 has two modes, "GenAI apps & agents" (traces, an assistant panel) and "Model training". The
experiment tag `mlflow.experimentKind` = `custom_model_development` marks ours as model training; the
UI of MLflow 3.17 takes the mode from its own switch instead (the `workflowType` query parameter, then
the browser's last choice, GenAI by default), so `make mlflow-ui` prints a runs-page address that sets
it and sorts the runs by test accuracy (a sort also lists the trainings flat, best first, instead of
folded under the pipeline's parent run). The metric and param columns stay where the UI puts them, right
of Dataset/Duration/Source/Models: the UI keeps the column choice in the browser, which no address sets.

    python -m cnnrepro.tracking.ui --port 5001   # print that address, then serve `mlflow ui` there

With a tracking server (tracking.uri, CNNREPRO_TRACKING_URI = http(s)://...) it prints the runs page on
that server and serves nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import quote

from cnnrepro.errors import CnnreproError
from cnnrepro.params import load_params

# metrics.json's headline figure, logged as a top-level metric of every finished training run.
SORT_METRIC = "test_accuracy"


def runs_page_url(base_url: str, experiment_id: str) -> str:
    """The experiment's runs page, model-training mode, runs sorted by test accuracy, best first."""
    sort_key = quote(f"metrics.`{SORT_METRIC}`", safe="")
    query = f"workflowType=machine_learning&orderByKey={sort_key}&orderByAsc=false"
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnnrepro.tracking.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    from cnnrepro.tracking.store import ensure_experiment, tracking_settings

    try:
        uri, experiment = tracking_settings(load_params(args.params))
        server = uri.startswith(("http://", "https://"))
        if not server and not uri.startswith("sqlite:"):
            print(f"{args.params}: tracking.uri is {uri}: open the UI of the server on that store", file=sys.stderr)
            return 1
        experiment_id = ensure_experiment(uri, experiment)
    except CnnreproError as exc:
        print(f"mlflow-ui: error: {exc}", file=sys.stderr)
        return 1
    if server:  # the server has its own UI: point at its runs page
        print(f"runs of {experiment!r}: {runs_page_url(uri, experiment_id)}", flush=True)
        return 0
    print(f"runs of {experiment!r}: {runs_page_url(f'http://{args.host}:{args.port}', experiment_id)}", flush=True)
    command = ["mlflow", "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    os.execvp(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
