"""What the researcher reads in each submission e-mail, through a real SMTP server: a plain-text and
an HTML part with the same facts, the link to the submission, the queue position, the failure stage,
reason and log tail, the final metrics; and the researcher's choice of which steps mail them."""

import re
import uuid

import pytest
from django.conf import settings
from django.urls import reverse

from accounts.models import Researcher
from accounts.services import researcher_create
from submissions import notifications
from submissions.models import Submission
from tests.helpers import mail_html, mail_text
from tests.integration.exports.conftest import finished_submission  # noqa: F401 (fixture)

S = Submission.Status


def a_researcher(prefix: str) -> Researcher:
    # The SMTP server lives for the whole session: every test writes to addresses of its own.
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return researcher_create(username=name, email=f"{name}@example.org", password=f"pw-{name}-{name}")


@pytest.fixture
def researcher(transactional_db):
    researcher = a_researcher("mira")
    Researcher.objects.filter(pk=researcher.pk).update(status=Researcher.Status.APPROVED)
    researcher.refresh_from_db()
    return researcher


def submission_of(researcher, **fields) -> Submission:
    fields.setdefault("status", S.QUEUED)
    return Submission.objects.create(owner=researcher.user, archive="x.zip", archive_sha256="ab" * 32, **fields)


def mail_about(mailbox, researcher, submission, status):
    notifications.status_changed(submission.pk, status)
    mails = mailbox.wait_for(researcher.user.email, 1)
    assert len(mails) == 1, [m["Subject"] for m in mails]
    return mails[0]


def visible_text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#x27;", "'").replace("&quot;", '"')


def assert_links_to(mail, submission):
    url = settings.PORTAL_URL + reverse("submissions:detail", args=[submission.pk])
    assert url in mail_text(mail)
    assert f'href="{url}"' in mail_html(mail)


def test_queued_mail_gives_the_place_in_the_queue(mailbox, researcher):
    other = a_researcher("olaf")
    submission_of(other)  # ahead in the queue
    mine = submission_of(researcher)
    Researcher.objects.filter(pk=researcher.pk).update(email_steps=["queued", "ended"])  # not sent by default

    mail = mail_about(mailbox, researcher, mine, S.QUEUED)

    assert mail["Subject"] == f"[M2D] Submission {mine.pk}: queued for execution"
    assert "Position in the queue: 2" in mail_text(mail)
    assert "Position in the queue: 2" in visible_text(mail_html(mail))
    assert_links_to(mail, mine)


def test_finished_mail_carries_the_final_metrics(mailbox, researcher):
    submission = submission_of(researcher, status=S.SUCCEEDED, metrics={"accuracy": 0.93, "loss": 0.21})

    mail = mail_about(mailbox, researcher, submission, S.SUCCEEDED)

    assert mail.get_content_type() == "multipart/alternative"
    text, html = mail_text(mail), mail_html(mail)
    assert "accuracy = 0.93" in text and "loss = 0.21" in text
    assert "<code>accuracy</code></td><td" in html and ">0.93</td>" in html
    assert f"Submission {submission.pk} : execution finished" in visible_text(html)
    assert_links_to(mail, submission)


@pytest.mark.parametrize(
    ("status", "stage", "reason", "tail_field", "tail", "headline"),
    [
        (S.FAILED, "build", "pip could not install m2d-nowhere==1.0", "build_log_tail",
         "ERROR: No matching distribution found for m2d-nowhere==1.0", "failed at stage build"),
        (S.FAILED, "run", "main.py exited with code 1", "run_log_tail",
         "ValueError: learning rate must be positive", "failed at stage run"),
        (S.TIMED_OUT, "run", "timed_out after 25 s", "run_log_tail", "epoch 7 of 100", "timed out at stage run"),
        (S.FAILED, "infrastructure", "the Docker engine did not answer", "build_log_tail", "",
         "failed at stage infrastructure"),
    ],
)  # fmt: skip
def test_failure_mail_names_stage_reason_and_tail(mailbox, researcher, status, stage, reason, tail_field, tail,
                                                  headline):  # fmt: skip
    submission = submission_of(researcher, status=status, failure_stage=stage, reason=reason, **{tail_field: tail})

    mail = mail_about(mailbox, researcher, submission, status)

    text, html = mail_text(mail), visible_text(mail_html(mail))
    for part in (text, html):
        assert headline in part and reason in part and tail in part
        assert ("fault of the platform, not of your code" in part) == (stage == "infrastructure")
    if tail:
        assert f"Last lines of the {tail_field.split('_')[0]} log" in text
        assert "<pre" in mail_html(mail)
    assert_links_to(mail, submission)


def test_account_page_chooses_which_steps_mail_the_researcher(client, mailbox, researcher):
    client.force_login(researcher.user)
    page = client.get(reverse("accounts:profile")).content.decode()
    # By default: code received, the end of each submission, decisions on exports.
    ticked = set(re.findall(r'id="email-(\w+)" checked', page))
    assert ticked == {"received", "ended", "decisions"}

    submission = submission_of(researcher, status=S.SUCCEEDED, metrics={"accuracy": 1.0})
    for step in (S.RECEIVED, S.QUEUED, S.RUNNING, S.SUCCEEDED):
        notifications.status_changed(submission.pk, step)
    subjects = [m["Subject"] for m in mailbox.wait_for(researcher.user.email, 2)]
    assert subjects == [
        f"[M2D] Submission {submission.pk}: code received",
        f"[M2D] Submission {submission.pk}: execution finished",
    ]

    response = client.post(reverse("accounts:email_preferences"), {"steps": ["started", "ended"]})
    assert response.status_code == 302
    page = client.get(response.url).content.decode()
    assert "Saved: you get the e-mails ticked below." in page
    assert set(re.findall(r'id="email-(\w+)" checked', page)) == {"started", "ended"}
    failed = submission_of(researcher, status=S.FAILED, failure_stage="run", reason="main.py exited with code 2")
    for step in (S.RECEIVED, S.QUEUED, S.RUNNING, S.FAILED):
        notifications.status_changed(failed.pk, step)
    subjects = [m["Subject"] for m in mailbox.wait_for(researcher.user.email, 4)][2:]
    assert subjects == [
        f"[M2D] Submission {failed.pk}: execution started",
        f"[M2D] Submission {failed.pk}: execution failed",
    ]

    assert client.post(reverse("accounts:email_preferences"), {"steps": ["spam"]}).status_code == 400


def test_account_mails_have_an_html_part_too(mailbox, researcher):
    from accounts import notifications as account_notifications

    Researcher.objects.filter(pk=researcher.pk).update(
        status=Researcher.Status.REJECTED, decision_reason="The project needs an ethics approval number."
    )
    account_notifications.researcher_decided(researcher.pk)

    mail = mailbox.wait_for(researcher.user.email, 1)[-1]
    assert "ethics approval number" in mail_text(mail)
    assert "ethics approval number" in visible_text(mail_html(mail))


def test_sign_in_mails_have_an_html_part_with_the_link(client, mailbox, researcher):
    from allauth.account.models import EmailAddress

    EmailAddress.objects.update_or_create(
        user=researcher.user, email=researcher.user.email, defaults={"verified": True, "primary": True}
    )
    client.post("/accounts/password/reset/", {"email": researcher.user.email})

    mail = mailbox.wait_for(researcher.user.email, 1)[-1]
    link = re.search(r"https?://\S+/accounts/password/reset/key/\S+", mail_text(mail)).group(0)
    assert f'href="{link}"' in mail_html(mail)


def test_export_decisions_mail_the_owner_unless_they_untick_them(mailbox, researcher, finished_submission):  # noqa: F811
    from exports.notifications import review_done

    submission = finished_submission(researcher.user, {"results.csv": b"epoch,auc\n1,0.7\n"})
    outcome = {"released": ["results.csv"], "rejected": [], "approved": []}
    review_done(submission.export.pk, None, outcome, "fine")
    assert mailbox.wait_for(researcher.user.email, 1)[-1]["Subject"].endswith("files released")

    Researcher.objects.filter(pk=researcher.pk).update(email_steps=["ended"])
    review_done(submission.export.pk, None, outcome, "fine")
    notifications.status_changed(submission.pk, S.SUCCEEDED)  # a mail they still want, to wait for
    subjects = [m["Subject"] for m in mailbox.wait_for(researcher.user.email, 2)]
    assert subjects[-1].endswith("execution finished") and len(subjects) == 2
