"""The asyncio loop: sends on schedule, stamps every read, turns ended requests into records."""
