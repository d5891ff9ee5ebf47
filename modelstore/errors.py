"""What the model store answers when a step is refused: each error knows its HTTP status and a
snake_case type, and its message says what to change."""


class ModelStoreError(ValueError):
    code = 400
    type = "bad_request"


class InvalidRequest(ModelStoreError):
    code, type = 400, "invalid_request"


class InvalidName(ModelStoreError):
    code, type = 400, "invalid_name"


class InvalidPath(ModelStoreError):
    code, type = 400, "invalid_path"


class InvalidCard(ModelStoreError):
    code, type = 400, "invalid_card"


class HashMismatch(ModelStoreError):
    code, type = 400, "hash_mismatch"


class NotAllowed(ModelStoreError):
    code, type = 403, "forbidden"


class NotReleased(ModelStoreError):
    code, type = 403, "not_released"


class NotFound(ModelStoreError):
    code, type = 404, "not_found"


class Conflict(ModelStoreError):
    code, type = 409, "conflict"


class StorageFailed(ModelStoreError):
    code, type = 503, "storage_unavailable"
