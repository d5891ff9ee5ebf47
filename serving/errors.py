"""Refusals of serving, each with the HTTP status the API answers."""


class ServingError(Exception):
    code = 400
    type = "bad_request"


class InvalidScale(ServingError):
    code, type = 400, "invalid_scale"


class NotServable(ServingError):
    code, type = 409, "not_servable"


class ScaleInProgress(ServingError):
    """Another scale of the same version is still starting or stopping its workers."""

    code, type = 409, "scale_in_progress"


class NoGpuHost(ServingError):
    """A deployment asks for GPUs where no host offers GPU slots."""

    code, type = 409, "no_gpu_host"


class NoSlotFree(ServingError):
    """Every GPU slot is held by runs or other serving workers: a scale may succeed later."""

    code, type = 503, "no_free_slot"


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


class WorkersBusy(ServingError):
    """Every ready worker of the version has its predictions in flight (M2D_SERVE_IN_FLIGHT)."""

    code, type = 503, "workers_busy"
    prefix = "Every worker of"  # how the audit rows of busy refusals begin; the reconciler counts them
