"""``make demo-rotation``: a credential rotation driven by a Key Vault event, end to end on the local
emulator and devhost.

What it does, in order: starts the emulator and devhost (as ``make demo``; devhost with
``ROTATION_CANARY_BY_TEMPLATE`` naming the "SaaS Pilot" group for AWS IAM Identity Center), subscribes
devhost's Event Grid webhook to the emulator vault's events (the emulator's Event Grid, with its
validation handshake), provisions four instances that share one Key Vault secret (one AWS IAM
Identity Center, whose template gives it a canary; three custom SCIM apps, one with its own canary
in the request), plays an expired token on one of them (a wrong token saved on its job behind the
workflow's back; the emulator's clock is moved 3 hours so the job's cycles quarantine it), then puts
a new version of the secret through Key Vault's API (the real ``SecretClient``). Key Vault
publishes ``SecretNewVersionCreated``; the app's Event Grid trigger starts the rotation, which
validates the new version against each target, saves it, restarts only the credential-quarantined
job and runs each instance's canary (provisionOnDemand). The demo prints the rotation report
(``GET /api/rotations/{id}``) and the expiry calendar's line for the secret (``GET /api/credentials``),
checks that the quarantined job is active again, writes the report to ``out/demo-rotation-report.json``,
stops what it started and exits 0 only when the rotation did all of that.

Run: ``python -m examples.demo_rotation [--time-scale 30] [--timeout 170]``. The core,
:func:`run_rotation_demo`, runs on any emulator + devhost (the tests run it on theirs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.demo import DEMO_SETTINGS, say  # noqa: E402

#: AWS IAM Identity Center: a SCIM gallery app (BaseAddress + SecretToken); its template gets a canary
AWS_IDC_TEMPLATE = "21ed01d2-ec13-4e9e-86c1-cd546719ebc4"
#: the simulated target every demo instance talks to (emulator/data/targets.json) and the token it accepts
ADDRESS = "https://scim.contoso.test/scim/v2"
TOKEN = "demo-scim-token"  # noqa: S105 - a fake token of the emulator's seed data (emulator/data/secrets.json)
EXPIRED_TOKEN = "expired-demo-token"  # noqa: S105 - plays a token the target no longer accepts
SECRET = "scim-rotation-demo-token"
CANARY_GROUP = "SaaS Pilot"
KEY_VAULT_EVENTS = ["Microsoft.KeyVault.SecretNewVersionCreated", "Microsoft.KeyVault.SecretNearExpiry",
                    "Microsoft.KeyVault.SecretExpired"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo_rotation", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "out" / "demo-rotation-report.json"))
    parser.add_argument("--work-dir", default=str(ROOT / "out" / "demo-rotation"), help="emulator and devhost state")
    parser.add_argument("--time-scale", type=float, default=30.0, help="emulator seconds per real second")
    parser.add_argument("--timeout", type=float, default=170.0, help="give up after this many seconds")
    args = parser.parse_args(argv)

    from devhost.testing import start_devhost
    from emulator.testing import start_emulator_process

    work = Path(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    say(f"starting the emulator (time scale x{args.time_scale:g}) and devhost ...")
    emulator = start_emulator_process(state_dir=work / "emulator", time_scale=args.time_scale)
    host = None
    try:
        graph = Graph(emulator)
        pilot = graph.group_id(CANARY_GROUP)
        canaries = json.dumps({AWS_IDC_TEMPLATE: f"Group:{pilot}"})
        say(f"ROTATION_CANARY_BY_TEMPLATE = {canaries} (AWS IAM Identity Center instances: group '{CANARY_GROUP}')")
        host = start_devhost(ROOT / "function_app.py", work / "devhost",
                             env={**emulator.env, **DEMO_SETTINGS, "ROTATION_CANARY_BY_TEMPLATE": canaries}, timeout=90)
        ok, report = run_rotation_demo(host, emulator, deadline=started + args.timeout)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        say(f"report written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}; "
            f"{time.monotonic() - started:.0f} s in all")
        say("the rotation did what it should" if ok else "THE ROTATION DID NOT DO WHAT IT SHOULD")
        return 0 if ok else 1
    except TimeoutError as exc:
        say(f"demo timed out: {exc}")
        return 1
    finally:
        if host is not None:
            host.stop()
        emulator.stop()


class Graph:
    """A few Graph calls on the emulator as the workflow's client (reads, and the token played as expired)."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        bearer = self.emulator.admin.token(client="workflow")
        response = requests.request(method, f"{self.emulator.url}/v1.0{path}", headers={"Authorization": f"Bearer {bearer}"},
                                    verify=self.emulator.ca_bundle, timeout=30, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"Graph {method} {path}: HTTP {response.status_code}")
        return response.json() if response.content else None

    def group_id(self, name: str) -> str:
        found = self.call("GET", "/groups", params={"$filter": f"displayName eq '{name}'", "$select": "id"})["value"]
        return str(found[0]["id"])

    def a_user_of(self, group_id: str) -> str:
        members = self.call("GET", f"/groups/{group_id}/members", params={"$select": "id"})["value"]
        return next(str(m["id"]) for m in members if "user" in str(m.get("@odata.type", "user")).lower())

    def job(self, sp_id: str) -> dict[str, Any]:
        return self.call("GET", f"/servicePrincipals/{sp_id}/synchronization/jobs")["value"][0]

    def put_token(self, sp_id: str, token: str) -> None:
        self.call("PUT", f"/servicePrincipals/{sp_id}/synchronization/secrets",
                  json={"value": [{"key": "BaseAddress", "value": ADDRESS}, {"key": "SecretToken", "value": token}]})


def secret_client(env: dict[str, str]) -> Any:
    """Key Vault's ``SecretClient`` on the emulator's vault, as the workflow's client (it may write secrets)."""
    from azure.identity import ClientSecretCredential
    from azure.keyvault.secrets import SecretClient

    ca = env.get("REQUESTS_CA_BUNDLE")
    credential = ClientSecretCredential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
                                        authority=env["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True,
                                        connection_verify=ca)
    return SecretClient(env["KEY_VAULT_URL"], credential, verify_challenge_resource=False, connection_verify=ca)


def demo_batch(prefix: str, canary_user: str) -> dict[str, Any]:
    """Four instances sharing Key Vault secret :data:`SECRET`; the second names its own canary."""
    def instance(name: str, template: dict[str, str], **extra: Any) -> dict[str, Any]:
        return {"applicationTemplate": template, "displayName": f"{prefix} {name}",
                "credentials": {"BaseAddress": ADDRESS, "SecretToken": {"keyVaultSecret": SECRET}},
                "assignments": {"groups": [CANARY_GROUP]}, **extra}

    custom = {"displayName": "Custom"}
    return {"requestId": "rotation-demo-001", "instances": [
        instance("AWS IAM Identity Center", {"id": AWS_IDC_TEMPLATE}),
        instance("SCIM with canary", custom, canary={"objectId": canary_user, "objectType": "user"}),
        instance("SCIM token expired", custom),
        instance("SCIM plain", custom)]}


def run_rotation_demo(host: Any, emulator: Any, *, prefix: str = "Rotation Demo", deadline: float | None = None,
                      out: Callable[[str], None] = say) -> tuple[bool, dict[str, Any]]:
    """The demo on a running emulator + devhost (devhost's ``ROTATION_CANARY_BY_TEMPLATE`` giving AWS IAM
    Identity Center the "SaaS Pilot" group); ``(ok, rotation report)``."""
    from core.instance_ids import rotation_instance_id

    deadline = deadline if deadline is not None else time.monotonic() + 170
    graph = Graph(emulator)
    pilot = graph.group_id(CANARY_GROUP)
    canary_user = graph.a_user_of(pilot)
    emulator.admin.seed(secrets={SECRET: TOKEN})
    webhook = (f"{host.base_url}/runtime/webhooks/eventgrid?functionName=eventgrid_key_vault_secret"
               f"&code={host.eventgrid_key}")
    emulator.admin.subscribe_events(webhook, name="rotation-demo", includedEventTypes=KEY_VAULT_EVENTS)
    out("Event Grid: devhost's webhook subscribed to the vault's secret events (handshake passed)")

    batch = demo_batch(prefix, canary_user)
    response = host.post("/api/provisioning-requests", json=batch)
    if response.status_code != 202:
        out(f"submission refused: HTTP {response.status_code} {response.text[:1000]}")
        return False, {}
    out(f"provisioning {len(batch['instances'])} instances that share Key Vault secret {SECRET} ...")
    status = _wait(host, response.json()["id"], deadline)
    instances = (status.get("output") or {}).get("instances") or []
    if [i.get("outcome") for i in instances] != ["steadyState"] * len(batch["instances"]):
        out(f"provisioning did not end in steady state: {[(i.get('displayName'), i.get('outcome')) for i in instances]}")
        return False, {}
    sp_of = {i["displayName"]: i["ids"]["servicePrincipalId"] for i in instances}
    expired = sp_of[f"{prefix} SCIM token expired"]

    out(f"'{prefix} SCIM token expired': its token expires (a wrong token on the job), 3 emulator hours pass ...")
    graph.put_token(expired, EXPIRED_TOKEN)
    emulator.admin.advance(3 * 3600)
    before = {name: (graph.job(sp)["status"].get("code")) for name, sp in sp_of.items()}
    out("job status before the rotation: " + ", ".join(f"{n[len(prefix) + 1:]}={c}" for n, c in before.items()))

    expires = datetime.now(timezone.utc) + timedelta(days=365)
    version = secret_client(emulator.env).set_secret(SECRET, TOKEN, content_type="text/plain", expires_on=expires).properties.version
    rotation_id = rotation_instance_id(SECRET, version)
    out(f"Key Vault: new version {version} of {SECRET} (expires {expires:%Y-%m-%d}); waiting for the event's "
        f"rotation {rotation_id} ...")
    view = _wait_rotation(host, rotation_id, deadline)
    report = view.get("report") or {}
    print_report(report, before, prefix, out)

    emulator.admin.advance(3 * 3600)  # the restarted job's next cycle
    after = graph.job(expired)["status"].get("code")
    calendar = host.get("/api/credentials").json()
    entry = next((s for s in calendar.get("secrets") or [] if s.get("secretName") == SECRET), {})
    out(f"after the rotation, '{prefix} SCIM token expired' job: {after}; calendar: {SECRET} expires "
        f"{entry.get('expires')} ({entry.get('daysLeft')} days left, {len(entry.get('instances') or [])} instances)")
    problems = check(report, before, prefix, canary_user, pilot, after)
    for problem in problems:
        out(f"NOT AS EXPECTED: {problem}")
    return not problems, report


def check(report: dict[str, Any], before: dict[str, str | None], prefix: str, canary_user: str, pilot: str,
          after: str | None) -> list[str]:
    """What the rotation must have done; the problems (none: it did)."""
    problems = []
    by_name = {e.get("displayName"): e for e in report.get("instances") or []}
    if report.get("source") != "event":
        problems.append(f"the rotation was started by {report.get('source')!r}, not by the Key Vault event")
    if report.get("counts") != {"rotated": len(before)}:
        problems.append(f"counts {report.get('counts')}, not every instance rotated")
    quarantined = {name for name, code in before.items() if code == "Quarantine"}
    if quarantined != {f"{prefix} SCIM token expired"}:
        problems.append(f"quarantined before the rotation: {sorted(quarantined)}")
    restarted = {name for name, e in by_name.items() if e.get("restarted")}
    if restarted != quarantined:
        problems.append(f"restarted {sorted(restarted)}, not exactly the quarantined {sorted(quarantined)}")
    wanted = {f"{prefix} AWS IAM Identity Center": (pilot, "template"),
              f"{prefix} SCIM with canary": (canary_user, "instance")}
    for name, entry in by_name.items():
        canary = entry.get("canary") or {}
        if name in wanted:
            if (canary.get("objectId"), canary.get("source"), canary.get("confirmed")) != (*wanted[name], True):
                problems.append(f"{name}: canary {canary}, expected {wanted[name]} confirmed")
        elif canary:
            problems.append(f"{name}: a canary ran though none is configured for it")
    if after != "Active":
        problems.append(f"the restarted job is {after}, not Active")
    return problems


def print_report(report: dict[str, Any], before: dict[str, str | None], prefix: str,
                 out: Callable[[str], None] = say) -> None:
    out(f"rotation {report.get('rotationId')} ({report.get('source')}): {report.get('counts')}")
    rows = [("Instance", "Job before", "Outcome", "Restarted", "Canary", "Reason")]
    for entry in report.get("instances") or []:
        name = entry.get("displayName") or "?"
        canary = entry.get("canary")
        canary_text = (f"{canary.get('source')}: {canary.get('objectTypeName')} {canary.get('status')}"
                       f"{' (confirmed)' if canary.get('confirmed') else ''}") if canary else "-"
        rows.append((name[len(prefix) + 1:] if name.startswith(prefix) else name, str(before.get(name)),
                     str(entry.get("outcome")), "yes" if entry.get("restarted") else "no", canary_text,
                     (entry.get("reason") or "")[:120]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out("")
    for index, row in enumerate(rows):
        out("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            out("  ".join("-" * w for w in widths))
    out("")


def _wait(host: Any, instance_id: str, deadline: float) -> dict[str, Any]:
    while True:
        status = host.get_status(instance_id) or {}
        if status.get("runtimeStatus") in ("Completed", "Failed", "Terminated"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"{instance_id} still {status.get('runtimeStatus')}")
        time.sleep(0.5)


def _wait_rotation(host: Any, rotation_id: str, deadline: float) -> dict[str, Any]:
    """``GET /api/rotations/{id}`` (function key) until the report is there."""
    while True:
        response = host.get(f"/api/rotations/{rotation_id}")
        view = response.json() if response.status_code == 200 else {}
        if view.get("runtimeStatus") in ("Completed", "Failed", "Terminated"):
            return view
        if time.monotonic() > deadline:
            raise TimeoutError(f"rotation {rotation_id}: {view.get('runtimeStatus') or 'not started'}")
        time.sleep(0.5)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
