"""devhost test app: queue options (batchSize + newBatchThreshold bound the calls in flight,
visibilityTimeout delays a retry, functionTimeout fails a slow call; a queue named ``*-poison`` has
no poison queue of its own). Calls are appended to ``$HOST_TEST_RECORD_DIR/calls.jsonl``."""
import asyncio
import json
import os
import time

import azure.functions as func

app = func.FunctionApp()

IN_FLIGHT = {"now": 0}


@app.queue_trigger(arg_name="msg", queue_name="opts-jobs", connection="AzureWebJobsStorage")
async def on_job(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode("utf-8")
    IN_FLIGHT["now"] += 1
    try:
        with open(os.path.join(os.environ["HOST_TEST_RECORD_DIR"], "calls.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"body": body, "dequeue_count": msg.dequeue_count, "at": time.time(),
                                "in_flight": IN_FLIGHT["now"]}) + "\n")
        if body.startswith("slow"):
            await asyncio.sleep(30)  # functionTimeout is 1 s
        if body.startswith("fail"):
            raise ValueError("asked to fail")
        await asyncio.sleep(0.2)  # long enough for a fetched batch to overlap
    finally:
        IN_FLIGHT["now"] -= 1


@app.queue_trigger(arg_name="msg", queue_name="opts-dead-poison", connection="AzureWebJobsStorage")
async def on_dead(msg: func.QueueMessage) -> None:
    with open(os.path.join(os.environ["HOST_TEST_RECORD_DIR"], "dead.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps({"body": msg.get_body().decode("utf-8"), "dequeue_count": msg.dequeue_count,
                            "at": time.time()}) + "\n")
    raise ValueError("the handler of a poison queue fails too")
