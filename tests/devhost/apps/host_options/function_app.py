"""devhost test app: host.json options (functionTimeout, empty routePrefix, log level)."""
import asyncio
import logging

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="slow")
async def slow(req: func.HttpRequest) -> str:
    await asyncio.sleep(30)
    return "too late"


@app.route(route="fast")
def fast(req: func.HttpRequest) -> str:
    logging.info("info line from fast (hidden at Warning)")
    logging.warning("warning line from fast")
    return "fast"
