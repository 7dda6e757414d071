"""Send your app's request logs to upwatch's push API.

Standard library only (the aiohttp middleware imports aiohttp, which an
aiohttp app already has). Three lines for an ASGI app:

    from upwatch_client import Client, ASGIMiddleware
    client = Client("http://127.0.0.1:8080/api/v1", api_key=os.environ["UPWATCH_KEY"])
    app = ASGIMiddleware(app, client)
"""

from upwatch_client.asgi import ASGIMiddleware
from upwatch_client.client import Client
from upwatch_client.wsgi import WSGIMiddleware

__all__ = ["ASGIMiddleware", "Client", "WSGIMiddleware"]
