"""The reason a failed run gives: the traceback of main.py, whole, even when other processes of the
run died mid-traceback after it."""

from submissions.reasons import run_reason as _run_reason

WHOLE = """epoch 1
Traceback (most recent call last):
  File "/opt/submission/main.py", line 4, in <module>
    train()
ValueError: learning rate must be positive"""


def test_the_traceback_of_main_py():
    assert _run_reason(1, WHOLE) == "main.py exited with code 1.\n" + WHOLE.split("\n", 1)[1]


def test_a_traceback_cut_off_by_the_container_stopping_is_passed_over():
    forked = """forking without end
Traceback (most recent call last):
  File "/opt/submission/main.py", line 5, in <module>
BlockingIOError: [Errno 11] Resource temporarily unavailable
Traceback (most recent call last):
  File "/opt/submission/main.py", line 5, in <module>"""
    reason = _run_reason(1, forked)
    assert reason.endswith("BlockingIOError: [Errno 11] Resource temporarily unavailable")
    assert reason.count("Traceback") == 1


def test_only_a_cut_off_traceback_is_still_shown():
    assert _run_reason(1, "Traceback (most recent call last):\n  File x").endswith("  File x")


def test_without_a_traceback_the_end_of_the_output():
    output = "\n".join(f"line {n}" for n in range(30))
    reason = _run_reason(3, output)
    assert reason.startswith("main.py exited with code 3. The end of its output:\nline 20\n")
    assert reason.endswith("line 29")
