"""Refusals of serving, each with the HTTP status the API answers."""


class ServingError(Exception):
    code = 400
    type = "bad_request"


class InvalidScale(ServingError):
    code, type = 400, "invalid_scale"


class NotServable(ServingError):
    code, type = 409, "not_servable"


class InvalidInput(ServingError):
    code, type = 400, "invalid_input"


class BodyTooLarge(ServingError):
    code, type = 413, "request_too_large"


class NoWorker(ServingError):
    code, type = 503, "no_ready_worker"


class ModelTimedOut(ServingError):
    code, type = 504, "model_timed_out"


class ModelFailed(ServingError):
    code, type = 502, "model_failed"
