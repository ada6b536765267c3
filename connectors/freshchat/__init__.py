"""Freshchat's REST API: the client, the group poller, and the group-name feed the worker reads."""
