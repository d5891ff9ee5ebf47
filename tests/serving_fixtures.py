"""The serving tests' fixtures (a released toy model deployed on this engine, scoped API clients),
for test modules outside tests/integration/serving: such a module names this one in its
`pytest_plugins`, and pytest registers them as it collects it."""

from tests.integration.serving.conftest import (  # noqa: F401 - registered as fixtures by pytest_plugins
    api,
    approved,
    deployed,
    export_storage,
    finished_submission,
    model_files,
    released,
    serve_settings,
    store,
    users,
)
