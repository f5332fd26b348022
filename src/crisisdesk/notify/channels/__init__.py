"""One file per channel; each turns a :class:`~crisisdesk.notify.channels.base.Message` into a send."""
