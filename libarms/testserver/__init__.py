from .server import Request, TestServer  # noqa: F401
