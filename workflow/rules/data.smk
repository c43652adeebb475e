# The data stages, chained by their rules' outputs: download -> clean -> split, download -> prepare_mnist.
rule download:
    input:
        code_of("download"),
        stamp=params_stamp("download"),
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
        raw=expand(rules.download.output, dataset="petimages"),
        code=code_of("clean"),
        stamp=params_stamp("clean"),
    output:
        images=directory("data/clean/petimages"),
        quarantine=directory("data/clean/quarantine"),
        manifest="data/clean/manifest.csv",
        summary="data/clean/summary.json",
    params:
        tracked=tracked_params("clean"),
    log:
        "logs/clean.log",
    shell:
        "cnnrepro clean --raw {input.raw} --out data/clean > {log} 2>&1"


rule split:
    input:
        images=rules.clean.output.images,
        code=code_of("split"),
        stamp=params_stamp("split"),
    output:
        book=directory("data/split/book"),
        keras_example=directory("data/split/keras_example"),
    params:
        tracked=tracked_params("split"),
    log:
        "logs/split.log",
    shell:
        "cnnrepro split --clean {input.images} --out data/split > {log} 2>&1"


rule prepare_mnist:
    input:
        raw=rules.download.output,
        code=code_of("prepare_mnist"),
        stamp=params_stamp("prepare_mnist"),
    output:
        "data/prepared/{dataset}.npz",
    wildcard_constraints:
        dataset="mnist|fashion_mnist",
    params:
        tracked=tracked_params("prepare_mnist"),
    log:
        "logs/prepare_mnist/{dataset}.log",
    shell:
        "cnnrepro prepare-mnist --dataset {wildcards.dataset} --raw {input.raw} --out {output} > {log} 2>&1"
