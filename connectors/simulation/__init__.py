"""Simulated Freshchat traffic with its contacts known in advance, and the poster that sends it."""
