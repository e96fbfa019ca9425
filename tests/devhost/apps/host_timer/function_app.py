"""devhost test app: timer triggers (every second, run on startup, schedule from an app setting)."""
import json
import os
import time

import azure.functions as func

app = func.FunctionApp()

RECORD_DIR = os.environ.get("HOST_TEST_RECORD_DIR", "")


def record(kind: str, timer: func.TimerRequest) -> None:
    with open(os.path.join(RECORD_DIR, f"{kind}.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps({"past_due": timer.past_due, "at": time.time(),
                            "next": (timer.schedule_status or {}).get("Next")}) + "\n")


@app.timer_trigger(arg_name="timer", schedule="%HOST_TIMER_SCHEDULE%")
def every_second(timer: func.TimerRequest) -> None:
    record("every_second", timer)


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
async def on_startup(timer: func.TimerRequest) -> None:
    record("on_startup", timer)
