"""Running the pipeline as a whole: one pipeline per directory (pipeline_lock), its parent MLflow run
(pipeline_run), the code each stage depends on (stage_code) and the stages table both DAG files derive from
(stages), the GPU slots a local run offers (gpu_slots), and `cnnrepro reproduce` (reproduce/)."""
