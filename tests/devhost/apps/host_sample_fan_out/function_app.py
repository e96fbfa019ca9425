"""Equivalent of samples-v2/fan_in_fan_out (azure-functions-durable 1.7.0 source distribution,
``samples-v2/fan_in_fan_out/function_app.py``): an HTTP starter posts a directory path, the
orchestrator lists its files with one activity, fans out one copy-to-blob activity per file
(``backups`` container, via ``AzureWebJobsStorage``, i.e. Azurite locally), and returns the total
number of bytes copied. Like the original it reads the connection string at import time.
Written for devhost's tests; the original is not copied here."""
import json
import logging
import os
import pathlib

import azure.durable_functions as df
import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

myApp = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

connect_str = os.getenv("AzureWebJobsStorage")


@myApp.route(route="orchestrators/{functionName}")
@myApp.durable_client_input(client_name="client")
async def HttpStart(req: func.HttpRequest, client):
    payload = json.loads(req.get_body().decode())
    instance_id = await client.start_new(req.route_params["functionName"], client_input=payload)
    logging.info("Started orchestration with ID = '%s'.", instance_id)
    return client.create_check_status_response(req, instance_id)


@myApp.orchestration_trigger(context_name="context")
def E2_BackupSiteContent(context: df.DurableOrchestrationContext):
    root_directory = context.get_input()
    if not root_directory:
        raise Exception("A directory path is required as input")
    files = yield context.call_activity("E2_GetFileList", root_directory)
    sizes = yield context.task_all([context.call_activity("E2_CopyFileToBlob", f) for f in files])
    return sum(sizes)


@myApp.activity_trigger(input_name="rootDirectory")
def E2_GetFileList(rootDirectory):
    found = []
    for path, _, names in os.walk(rootDirectory):
        found.extend(os.path.join(path, n) for n in names)
    return sorted(found)


@myApp.activity_trigger(input_name="filePath")
def E2_CopyFileToBlob(filePath):
    service = BlobServiceClient.from_connection_string(connect_str)
    try:
        service.create_container("backups")
    except ResourceExistsError:
        pass
    parent_dir, fname = pathlib.Path(filePath).parts[-2:]
    blob = service.get_blob_client(container="backups", blob=f"{parent_dir}_{fname}")
    with open(filePath, "rb") as data:
        blob.upload_blob(data, overwrite=True)
    return os.path.getsize(filePath)
