"""What the platform and the runs agree on in MLflow (no Django: the gateway imports it alone)."""

# Every MLflow run a submission makes carries this tag, set by the tracking gateway; the platform
# finds a submission's runs, and their metrics, by it.
SUBMISSION_TAG = "m2d.submission_id"
