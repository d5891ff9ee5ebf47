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
