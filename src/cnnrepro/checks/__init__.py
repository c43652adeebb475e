"""What the project reads back is input: checks that run before anything uses it.

`bounded_yaml`: a YAML file read within a size, an expanded-node and a depth limit (params.yaml, by every
tool that reads it). `run_fields`: the type and range of each field of the run-output contract (run
directories, read by the report and by the commands that continue from a run).
"""
