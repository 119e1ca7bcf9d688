"""The sans-I/O core: knows nothing of sockets, HTTP, databases or asyncio."""
