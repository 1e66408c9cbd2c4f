"""What keyturn shows a person during an interactive login: the device prompt, the browser launch,
the loopback redirect listener and its landing page."""
