rule download:
    input:
        stage_code("download"),
    output:
        directory("data/raw/{dataset}"),
    wildcard_constraints:
        dataset="petimages|mnist|fashion_mnist",
    params:
        tracked=tracked_params("download"),
    log:
        "logs/download/{dataset}.log",
    shell:
        "cnnrepro download --dataset {wildcards.dataset} --out {output} > {log} 2>&1"


rule clean:
    input:
        "data/raw/petimages",
        stage_code("clean"),
    output:
        directory("data/clean/petimages"),
        directory("data/clean/quarantine"),
        "data/clean/manifest.csv",
        "data/clean/summary.json",
    params:
        tracked=tracked_params("clean"),
    log:
        "logs/clean.log",
    shell:
        "cnnrepro clean --raw data/raw/petimages --out data/clean > {log} 2>&1"


rule split:
    input:
        "data/clean/petimages",
        stage_code("split"),
    output:
        directory("data/split/book"),
        directory("data/split/keras_example"),
    params:
        tracked=tracked_params("split"),
    log:
        "logs/split.log",
    shell:
        "cnnrepro split --clean data/clean/petimages --out data/split > {log} 2>&1"


rule prepare_mnist:
    input:
        "data/raw/{dataset}",
        stage_code("prepare-mnist"),
    output:
        "data/prepared/{dataset}.npz",
    wildcard_constraints:
        dataset="mnist|fashion_mnist",
    params:
        tracked=tracked_params("prepare_mnist"),
    log:
        "logs/prepare_mnist/{dataset}.log",
    shell:
        "cnnrepro prepare-mnist --dataset {wildcards.dataset} --raw data/raw/{wildcards.dataset} --out {output} > {log} 2>&1"
