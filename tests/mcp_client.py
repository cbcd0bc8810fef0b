"""An AI agent's research loop, driven through `expcluster mcp` with the official MCP
Python SDK (the `mcp` package): used by tests/tests/it/mcp.rs.

    mcp_client.py loop EXPCLUSTER WORKSPACE      # stdio: a whole four-stage run
    mcp_client.py http URL CLIENT_TOKEN WORKER_TOKEN
    mcp_client.py remote EXPCLUSTER WORKSPACE COORDINATOR TOKEN_FILE GATE
                                                 # stdio, --coordinator: one stage

It asserts what an agent relies on (every tool listed with its schemas, structured
results that match them, progress while `wait` runs, clear tool errors for bad input
that change nothing) and prints one JSON object of what it saw, for the Rust test.
"""

import asyncio
import hashlib
import json
import os
import sys
import time

import httpx2
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

TOOLS = {
    "init", "validate", "submit", "wait", "status", "cancel", "summary", "claims",
    "job_logs", "metrics", "idea_update", "idea_log", "report",
}

# A command job whose accuracy its params decide: the baseline is 0.3 more accurate
# than the proposed method, so the data contradicts the claim `beats-baseline`.
RUNFILE = """
import json, os
params = json.loads(os.environ["EXP_CONFIG"])["params"]
seed = int(os.environ["EXP_SEED"])
for step in range(3):
    print(f"train_loss: {1.0 / (step + 1) * (1 + params['jitter'][seed])}")
print(f"test_accuracy: {params['base'] * (1 + params['jitter'][seed])}")
"""

CONFIG = """name: mcp-loop
primary_metric: {name: test_accuracy, goal: max}
metrics: [train_loss, test_accuracy]
job:
  command: [python, runfile.py]
  params: {base: 0.5, jitter: [0.011, 0.032, 0.018, 0.047, 0.025]}
methods:
  proposed: {}
  baseline: {params.base: 0.8, params.jitter: [0.021, 0.012, 0.044, 0.031, 0.052]}
ablations:
  no_bonus: {params.base: 0.3}
stages:
  implementation: {methods: [proposed], seeds: 1}
  baselines: {seeds: 5}
  full: {seeds: 3, methods: [proposed, baseline]}
  ablations: {seeds: 3}
claims:
  - {id: beats-baseline, better: proposed, than: baseline, metric: test_accuracy,
     statement: "The proposed method is more accurate than the baseline."}
resources: {max_attempts: 1, timeout: 2m}
"""

IDEA_MD = """# mcp-loop

## Hypothesis
The proposed method is more accurate than the baseline.

## Method
The proposed method; the baseline; an ablation without the bonus.

## Metrics
- Primary: test_accuracy (higher is better).

## Claims
- **beats-baseline** (open): The proposed method is more accurate than the baseline.
"""

REASON = ("The baselines contradict beats-baseline (the baseline is about 0.3 more accurate): "
          "narrow the idea to the proposed method's cost advantage and keep the comparison as a negative result.")

NEW_IDEA_MD = IDEA_MD.replace(
    "The proposed method is more accurate than the baseline.\n\n## Method",
    "The proposed method is cheaper than the baseline at a known accuracy cost.\n\n## Method",
)


def check(condition, what):
    if not condition:
        raise AssertionError(what)


async def call(session, tool, arguments=None, **options):
    """A tool call that must succeed; returns its structured result."""
    result = await session.call_tool(tool, arguments or {}, **options)
    text = " ".join(getattr(block, "text", "") for block in result.content)
    check(not result.is_error, f"{tool}({arguments}) failed: {text}")
    check(isinstance(result.structured_content, dict), f"{tool} gave no structured result: {text}")
    return result.structured_content


async def refused(session, tool, arguments, expected):
    """A tool call that must fail with a tool error whose text contains `expected`."""
    result = await session.call_tool(tool, arguments)
    text = " ".join(getattr(block, "text", "") for block in result.content)
    check(result.is_error, f"{tool}({arguments}) was accepted: {text}")
    check(expected in text, f"{tool}({arguments}): {text!r} does not say {expected!r}")
    return text


def fingerprint(workspace):
    """What bad input must not change."""
    digest = {}
    for name in ["idea.md", "idea.json", "idea_evolution.md", "research_log.jsonl", "config.yaml"]:
        with open(os.path.join(workspace, name), "rb") as file:
            digest[name] = hashlib.sha256(file.read()).hexdigest()
    return digest


async def bad_input(session, workspace, seen):
    """Every refusal is a clear tool error and changes nothing."""
    before = fingerprint(workspace)
    outside = os.path.join(os.path.dirname(workspace), "outside.md")
    with open(outside, "w") as file:
        file.write("# not the idea\n")
    errors = {
        "unknown_stage": await refused(session, "submit", {"stage": "finals"}, "unknown stage"),
        "unknown_summary_stage": await refused(session, "summary", {"stage": "finals"}, "unknown stage"),
        "stage_all": await refused(session, "wait", {"stage": "all"}, "one stage"),
        "outside_path": await refused(session, "idea_update", {"reason": "r", "from": "../outside.md"}, "outside the workspace"),
        "absolute_path": await refused(session, "idea_update", {"reason": "r", "from": outside}, "absolute"),
        "token_path": await refused(session, "idea_update", {"reason": "r", "from": ".expcluster/client.token"}, "hidden"),
        "malformed_type": await refused(session, "submit", {"stage": 3}, "failed to deserialize parameters"),
        "unknown_field": await refused(session, "submit", {"stages": "full"}, "unknown field"),
        "malformed_timeout": await refused(session, "wait", {"stage": "full", "timeout_s": "soon"}, "failed to deserialize parameters"),
        "no_reason": await refused(session, "idea_update", {"idea_md": NEW_IDEA_MD}, "missing field `reason`"),
        "empty_reason": await refused(session, "idea_update", {"reason": "   ", "idea_md": NEW_IDEA_MD}, "reason is empty"),
        "unknown_stream": await refused(session, "job_logs", {"job_id": "x", "stream": "core"}, "unknown stream"),
    }
    for uri in ["expcluster://workspace/../outside.md", "expcluster://workspace/.expcluster/client.token",
                f"expcluster://workspace/{outside}", "file:///etc/passwd"]:
        try:
            await session.read_resource(uri)
        except MCPError as err:
            errors[f"resource {uri}"] = err.error.message
        else:
            raise AssertionError(f"resource {uri} was served")
    check(fingerprint(workspace) == before, "bad input changed the workspace")
    seen["errors"] = errors


async def loop(expcluster, workspace):
    seen = {"progress": {}}
    params = StdioServerParameters(
        command=expcluster, args=["mcp", "--workspace", workspace, "--slots", "2"],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")})
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            check(TOOLS <= set(tools), f"tools missing: {TOOLS - set(tools)}")
            for name in TOOLS:
                check(tools[name].input_schema.get("type") == "object", f"{name} input schema")
                check(tools[name].output_schema is not None, f"{name} has no output schema")
            seen["tools"] = sorted(tools)

            created = await call(session, "init", {})
            check("config.yaml" in created["files"], created)
            # The agent writes its experiment, as it would with its own file tools.
            for name, text in [("config.yaml", CONFIG), ("runfile.py", RUNFILE), ("idea.md", IDEA_MD)]:
                with open(os.path.join(workspace, name), "w") as file:
                    file.write(text)
            validation = await call(session, "validate")
            check(validation["valid"], validation)
            seen["jobs_per_stage"] = {s["stage"]: s["jobs"] for s in validation["matrix"]["jobs_per_stage"]}

            listed = {resource.name for resource in (await session.list_resources()).resources}
            check({"idea.md", "idea.json", "idea_evolution.md", "research_log.jsonl"} <= listed, listed)
            idea = await session.read_resource("expcluster://workspace/idea.md")
            check("beats-baseline" in idea.contents[0].text, idea)

            await bad_input(session, workspace, seen)

            for stage in ["implementation", "baselines"]:
                await run_stage(session, stage, seen)

            summary = await call(session, "summary", {"stage": "baselines"})
            check({"proposed", "baseline"} <= set(summary["summary"]["methods"]), summary)
            claims = await call(session, "claims", {})
            latest = {verdict["claim"]: verdict for verdict in claims["latest"]}
            check(latest["beats-baseline"]["status"] == "contradicted", claims)
            seen["contradicted"] = latest["beats-baseline"]
            history = await call(session, "idea_log")
            seen["versions_before"] = [v["version"] for v in history["versions"]]

            updated = await call(session, "idea_update", {"reason": REASON, "idea_md": NEW_IDEA_MD})
            check(updated["to_version"] == updated["from_version"] + 1, updated)
            check("cheaper than the baseline" in (updated["diff"] or ""), updated)
            seen["updated"] = updated

            for stage in ["full", "ablations"]:
                await run_stage(session, stage, seen)

            job = seen["full"]["jobs"][0]["job_id"]
            metrics = await call(session, "metrics", {"job_id": job})
            check(len(metrics["series"]["train_loss"]) == 3, metrics)
            log = await call(session, "job_logs", {"job_id": job})
            check("test_accuracy:" in log["tail"], log)
            report = await call(session, "report")
            check("Claims and verdicts" in report["text"], report["path"])
            research_log = await session.read_resource("expcluster://workspace/research_log.jsonl")
            events = [json.loads(line) for line in research_log.contents[0].text.splitlines()]
            seen["idea_updated"] = [e for e in events if e["type"] == "idea_updated"]
            status = await call(session, "status", {})
            seen["stages"] = {s["stage"]: s["completed_runs"] for s in status["overview"]["stages"]}
    print(json.dumps(seen))


async def run_stage(session, stage, seen):
    """Submit (which answers at once), then wait with progress notifications."""
    started = time.monotonic()
    submitted = await call(session, "submit", {"stage": stage})
    check(submitted["run_id"], submitted)
    notes = []

    async def on_progress(progress, total, message):
        notes.append({"progress": progress, "total": total, "message": message})

    result = await call(session, "wait", {"stage": stage, "timeout_s": 300},
                        progress_callback=on_progress)
    # The SDK runs progress callbacks as tasks of their own: let the last one run.
    await asyncio.sleep(0.2)
    check(result["finished"] and not result["timed_out"], result)
    check(result["failed"] == 0 and result["succeeded"] == result["jobs_total"], result)
    check(notes and notes[-1]["progress"] == notes[-1]["total"] == result["jobs_total"], notes)
    check(f"[{stage}]" in notes[-1]["message"], notes[-1])
    seen["progress"][stage] = notes
    seen[stage] = {"run_id": submitted["run_id"], "submit_s": time.monotonic() - started,
                   "idea_version": result["idea_version"], "jobs": result["jobs"]}


async def http(url, client_token, worker_token):
    seen = {}
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                        "clientInfo": {"name": "raw", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient() as raw:
        for name, token in [("none", None), ("worker", worker_token), ("bogus", "ecc_" + "0" * 64)]:
            sent = dict(headers)
            if token:
                sent["Authorization"] = f"Bearer {token}"
            response = await raw.post(url, json=hello, headers=sent)
            seen[name] = {"status": response.status_code, "body": response.text}
    authorized = httpx2.AsyncClient(headers={"Authorization": f"Bearer {client_token}"},
                                    timeout=httpx2.Timeout(30, read=300))
    async with authorized:
        async with streamable_http_client(url, http_client=authorized) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = {tool.name for tool in (await session.list_tools()).tools}
                check(TOOLS <= tools, tools)
                validation = await call(session, "validate")
                check(validation["valid"], validation)
                # A tool that asks the coordinator (the embedded one, or --coordinator's).
                status = await call(session, "status", {})
                seen["client"] = {"tools": sorted(tools), "jobs_total": validation["matrix"]["jobs_total"],
                                  "defined_stages": [s["stage"] for s in status["overview"]["stages"] if s["defined"]]}
    print(json.dumps(seen))


async def poll(what, probe, limit=120):
    """Calls `probe` until it returns something true (a real event: a job's points
    reaching the coordinator); fails after `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        found = await probe()
        if found:
            return found
        check(time.monotonic() < deadline, f"timed out after {limit}s waiting for {what}")
        await asyncio.sleep(0.1)


async def remote(expcluster, workspace, coordinator, token_file, gate):
    """One stage through `expcluster mcp --coordinator`: the jobs block on the file
    `gate` after two points, so the metrics tool is seen live, and idea_update refused
    while the stage runs; then the gate opens and the stage ends."""
    seen = {}
    params = StdioServerParameters(
        command=expcluster,
        args=["mcp", "--coordinator", coordinator, "--token-file", token_file, "--workspace", workspace],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")})
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            submitted = await call(session, "submit", {"stage": "baselines"})
            seen["submitted"] = submitted

            async def running_job():
                status = await call(session, "status", {"stage": "baselines"})
                jobs = [job for job in status["stage"]["jobs"] if job["state"] == "running"]
                for job in jobs:
                    metrics = await call(session, "metrics", {"job_id": job["job_id"]})
                    if len(metrics["series"].get("train_loss", [])) == 2:
                        return metrics
                return None

            live = await poll("a running job's first two points", running_job)
            seen["live"] = live
            seen["refused_while_running"] = await refused(
                session, "idea_update", {"reason": "too early", "idea_md": NEW_IDEA_MD}, "is running")
            with open(gate, "w") as file:
                file.write("go\n")
            result = await call(session, "wait", {"stage": "baselines", "timeout_s": 300})
            check(result["finished"] and result["failed"] == 0, result)
            seen["wait"] = {"finished": result["finished"], "succeeded": result["succeeded"],
                            "idea_version": result["idea_version"]}
            seen["after"] = await call(session, "metrics", {"job_id": live["job_id"]})
            seen["summary_methods"] = sorted((await call(session, "summary", {"stage": "baselines"}))["summary"]["methods"])
            seen["claims"] = (await call(session, "claims", {}))["latest"]
            seen["updated"] = await call(session, "idea_update", {"reason": REASON, "idea_md": NEW_IDEA_MD})
            history = await call(session, "idea_log")
            seen["versions"] = [v["version"] for v in history["versions"]]
    print(json.dumps(seen))


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "loop":
        asyncio.run(loop(*rest))
    elif mode == "http":
        asyncio.run(http(*rest))
    elif mode == "remote":
        asyncio.run(remote(*rest))
    else:
        sys.exit(f"unknown mode {mode!r}: loop, http or remote")
