"""Sinks that carry contacts from Kafka into a WFM: injixo's contact-events API, CSV files."""
