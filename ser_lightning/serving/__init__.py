"""The HTTP API and the web page over ser_lightning.inference (`python -m ser_lightning.serve`)."""
