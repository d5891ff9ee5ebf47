"""Sending work to the workers. Messages only wake workers up: the database is the record."""


def request_build(submission_id: int) -> None:
    from .tasks import build_submission

    build_submission.delay(submission_id)


def wake_run_slots() -> None:
    from .tasks import wake_run_slots as task

    task.delay()


def stop_run(submission_id: int) -> None:
    """Ask a maintenance worker to stop a cancelled run's container (the run worker is busy
    waiting on it)."""
    from .tasks import stop_cancelled_run

    stop_cancelled_run.delay(submission_id)
