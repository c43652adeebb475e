"""`cnnrepro reproduce`: the pipeline under Snakemake with a plan first and live progress."""
