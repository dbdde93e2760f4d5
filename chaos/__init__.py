"""The chaos run (``make chaos``): orders under load while processes and a database fail."""
