# Checks of the configuration that no job should wait for (included right after validate()).
import sys

from cnnrepro.params import apply_environment, tracking_uri_source
from cnnrepro.errors import CnnreproError
from cnnrepro.tracking.uri import check_tracking_uri

try:
    check_tracking_uri(apply_environment(config)["tracking"]["uri"], tracking_uri_source())
except CnnreproError as exc:
    # One line, as the stages print theirs, instead of Snakemake's traceback of the Snakefile.
    print(f"cnnrepro pipeline: error: {exc}", file=sys.stderr)
    sys.exit(1)
