"""The pure domain: Freshchat events in, chat state and contacts out. No I/O, no framework:
nothing here may import faust, aiokafka, aiohttp or httpx (tests/domain/test_imports.py)."""
