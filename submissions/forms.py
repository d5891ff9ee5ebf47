from django import forms


class UploadForm(forms.Form):
    archive = forms.FileField(
        label="submission.zip",
        help_text="A zip with main.py and requirements.txt at its top level.",
        widget=forms.ClearableFileInput(attrs={"accept": ".zip,application/zip"}),
    )
