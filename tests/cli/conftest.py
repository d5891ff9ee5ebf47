"""The model store's fixtures (released exports, approved users, the store's storage) for the
`m2d models` tests."""

from tests.integration.modelstore.conftest import (  # noqa: F401 (fixtures)
    approved,
    finished_submission,
    released,
    store,
    users,
)
