from django.db import models


class MailFailure(models.Model):
    """An e-mail the platform could not hand to the mail server. Kept in the database so every
    process counts the same failures, and an admin can see who missed which message."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    subject = models.CharField(max_length=300, blank=True)
    recipients = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.subject}"


class OutgoingMail(models.Model):
    """An e-mail on its way. It is stored before it is sent and removed once the mail server took
    it, so a process that dies with mails in its outbox, or a mail server that is down, delays
    mails instead of losing them (ops.outbox sends what is due again)."""

    created_at = models.DateTimeField(auto_now_add=True)
    subject = models.CharField(max_length=300)
    recipients = models.JSONField()
    text = models.TextField()
    html = models.TextField(blank=True)
    # Whoever holds `claim` may send it until `due_at`; after that, anyone may take it over.
    claim = models.UUIDField()
    due_at = models.DateTimeField(db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["due_at", "id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.subject}"
