"""Sending work to the workers. Messages only wake workers up: the database is the record."""


def request_build(submission_id: int) -> None:
    from .tasks import build_submission

    build_submission.delay(submission_id)


def wake_run_slots() -> None:
    from .tasks import wake_run_slots as task

    task.delay()
