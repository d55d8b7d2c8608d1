"""One module per endpoint; collaborators come from ``app.state`` through ``deps``."""
