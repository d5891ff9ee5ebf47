"""What the airlock answers when a step is refused."""


class ExportRefused(ValueError):
    """The step is not allowed or the input is wrong; the message says what to do instead."""


class LinkExpired(ExportRefused):
    pass
