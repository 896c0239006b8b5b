"""pyraftkv's native client protocol: length-prefixed frames carrying etcd v3 messages.

Sans-I/O (bytes in, frames out, frames in, bytes out), so the server, the blocking client
and the asyncio client share one codec and tests need no sockets.
"""
