"""The webhook ingress: HTTP in, authenticated and validated, on the raw topic before the 202."""
