"""Integrations: their records and registry on the integrations topic, and their health."""
