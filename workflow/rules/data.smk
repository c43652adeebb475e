rule download:
    input:
        CODE + "/data/download.py",
        CODE + "/data/idx.py",
    output:
        directory("data/raw/{dataset}"),
    wildcard_constraints:
        dataset="petimages|mnist|fashion_mnist",
    log:
        "logs/download/{dataset}.log",
    shell:
        "cnnrepro download --dataset {wildcards.dataset} --out {output} > {log} 2>&1"


rule clean:
    input:
        "data/raw/petimages",
        CODE + "/data/clean.py",
        CODE + "/data/archive_layout.py",
        CODE + "/data/bounded_read.py",
        CODE + "/data/pixels.py",
    output:
        directory("data/clean/petimages"),
        directory("data/clean/quarantine"),
        "data/clean/manifest.csv",
        "data/clean/summary.json",
    log:
        "logs/clean.log",
    shell:
        "cnnrepro clean --raw data/raw/petimages --out data/clean > {log} 2>&1"


rule split:
    input:
        "data/clean/petimages",
        CODE + "/data/split.py",
    output:
        directory("data/split/book"),
        directory("data/split/keras_example"),
    log:
        "logs/split.log",
    shell:
        "cnnrepro split --clean data/clean/petimages --out data/split > {log} 2>&1"


rule prepare_mnist:
    input:
        "data/raw/{dataset}",
        CODE + "/data/idx.py",
        CODE + "/data/mnist.py",
    output:
        "data/prepared/{dataset}.npz",
    wildcard_constraints:
        dataset="mnist|fashion_mnist",
    log:
        "logs/prepare_mnist/{dataset}.log",
    shell:
        "cnnrepro prepare-mnist --dataset {wildcards.dataset} --raw data/raw/{wildcards.dataset} --out {output} > {log} 2>&1"
