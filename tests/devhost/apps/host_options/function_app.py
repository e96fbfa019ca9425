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


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
async def slow_timer(timer: func.TimerRequest) -> None:
    await asyncio.sleep(30)  # functionTimeout is 1 s
