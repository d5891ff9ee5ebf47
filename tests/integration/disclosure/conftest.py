"""The airlock's fixtures (export storage on a local folder and on S3, users, finished submissions)."""

from tests.integration.exports.conftest import export_storage, finished_submission, s3_server, users  # noqa: F401
