"""Talking to Kafka: configured clients, topics, followers of compacted topics, lag, the embedded broker."""
