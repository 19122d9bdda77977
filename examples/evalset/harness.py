#!/usr/bin/env python3
"""A minimal eval harness for Flywheel's eval-set service.

It does what a real harness does before every prompt or model change:

  1. fetch a pinned snapshot of an eval set (StreamCases) and check its content digest,
  2. run a candidate on every case and grade it with the case's assertions,
  3. record the run and its per-case results (CreateRun, RecordResults, CompleteRun),
  4. compare with a baseline run and print release notes (CompareRuns).

Stubs are generated at run time from the repository's protos into a temporary directory (no
generated code is committed). Needs Debian's python3-grpcio, protobuf-compiler and
protobuf-compiler-grpc (for grpc_python_plugin).

    FLYWHEEL_API_KEY=fw_sk_... python3 examples/evalset/harness.py \
        --address 127.0.0.1:50054 --eval_set_id support --version_tag prod \
        --candidate_label "gpt-4o + support-prompt@v15" --baseline_run_id run-v14

The candidate here is a stand-in (`answer`): replace it with your model call.
"""

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_stubs(proto_root):
    """Generates the Python modules of the eval-set API into a temp dir and imports them."""
    out = tempfile.mkdtemp(prefix="flywheel-stubs-")
    plugin = os.environ.get("GRPC_PYTHON_PLUGIN", "/usr/bin/grpc_python_plugin")
    subprocess.run(
        ["protoc", "-I" + proto_root, "--python_out=" + out, "--grpc_python_out=" + out,
         "--plugin=protoc-gen-grpc_python=" + plugin,
         "flywheel/evalset/v1/evalset.proto", "flywheel/common/v1/common.proto"],
        check=True)
    sys.path.insert(0, out)
    from flywheel.evalset.v1 import evalset_pb2, evalset_pb2_grpc  # noqa: E402
    return evalset_pb2, evalset_pb2_grpc


def input_text(case):
    """The prompt, or the user messages joined by newlines."""
    if case.input.WhichOneof("kind") == "prompt":
        return case.input.prompt
    users = [m.content for m in case.input.messages.messages if m.role == "user"]
    return "\n".join(users or [m.content for m in case.input.messages.messages])


def answer(case):
    """Stand-in candidate: replace with a call to your model and prompt."""
    text = input_text(case)
    if "refund" in text.lower():
        return "Refunds are possible within 30 days of purchase [1]."
    return "I am not sure."


def grade(pb, case, output):
    """Evaluates the assertions Flywheel stores (the harness owns evaluation)."""
    if not case.assertions:
        expected = case.expected_output.strip()
        return (pb.VERDICT_PASS if expected and output.strip() == expected else pb.VERDICT_FAIL), None
    passed = 0.0
    total = 0.0
    for a in case.assertions:
        weight = a.weight if a.HasField("weight") else 1.0
        total += weight
        haystack, needle = (output.lower(), a.value.lower()) if a.ignore_case else (output, a.value)
        if a.type == pb.ASSERTION_TYPE_CONTAINS:
            ok = needle in haystack
        elif a.type == pb.ASSERTION_TYPE_NOT_CONTAINS:
            ok = needle not in haystack
        elif a.type == pb.ASSERTION_TYPE_REGEX:
            ok = re.search(a.value, output) is not None
        elif a.type == pb.ASSERTION_TYPE_EQUALS:
            ok = haystack.strip() == needle.strip()
        else:
            ok = True  # LLM_RUBRIC, JSON_SCHEMA, CUSTOM: plug in your graders here
        passed += weight if ok else 0.0
    score = passed / total if total else 1.0
    return (pb.VERDICT_PASS if score >= 1.0 else pb.VERDICT_FAIL), score


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", default="127.0.0.1:50054")
    parser.add_argument("--api_key", default=os.environ.get("FLYWHEEL_API_KEY", ""))
    parser.add_argument("--eval_set_id", required=True)
    parser.add_argument("--version_tag", default="", help="e.g. prod; default: latest")
    parser.add_argument("--candidate_label", required=True)
    parser.add_argument("--run_id", default="", help="idempotency key of the run (retry-safe)")
    parser.add_argument("--baseline_run_id", default="")
    parser.add_argument("--protos", default=os.path.join(ROOT, "protos"))
    args = parser.parse_args()
    if not args.api_key:
        parser.error("--api_key or FLYWHEEL_API_KEY is required")

    pb, rpc = load_stubs(args.protos)
    import grpc  # noqa: E402

    channel = grpc.insecure_channel(args.address, options=[
        ("grpc.max_receive_message_length", 8 << 20)])
    stub = rpc.EvalSetServiceStub(channel)
    auth = [("authorization", "Bearer " + args.api_key)]

    # 1. Fetch the snapshot. The header pins the version; cases arrive in case_id order, many
    #    per message. A broken stream resumes with version.number + after_case_id.
    ref = pb.VersionRef(tag=args.version_tag) if args.version_tag else pb.VersionRef(latest=True)
    started = time.time()
    cases, header = [], None
    for message in stub.StreamCases(
            pb.StreamCasesRequest(eval_set_id=args.eval_set_id, version=ref,
                                  max_cases_per_message=1000), metadata=auth):
        if message.HasField("header"):
            header = message.header
        cases.extend(message.cases)
    version = header.version.version
    digest = hashlib.sha256("".join(
        "%s\t%s\n" % (c.case_id, c.content_digest) for c in cases).encode()).hexdigest()
    assert "sha256:" + digest == header.version.content_digest, "snapshot digest mismatch"
    print("fetched %d cases of %s v%d in %.2fs (digest verified)"
          % (len(cases), args.eval_set_id, version, time.time() - started))

    # 2. Start a run pinned to exactly that version.
    run = stub.CreateRun(pb.CreateRunRequest(
        run=pb.Run(run_id=args.run_id, eval_set_id=args.eval_set_id,
                   candidate_label=args.candidate_label),
        version=pb.VersionRef(number=version)), metadata=auth).run
    print("run %s (%s) on v%d" % (run.run_id, run.candidate_label, run.version))

    # 3. Run and grade every case; record results in batches (idempotent per case: a retried
    #    batch answers DUPLICATE for what was already stored).
    batch = []

    def flush():
        if not batch:
            return
        response = stub.RecordResults(
            pb.RecordResultsRequest(run_id=run.run_id, results=batch), metadata=auth)
        rejected = [r for r in response.results if r.outcome == 3]  # ITEM_OUTCOME_REJECTED
        if rejected:
            print("rejected results: %s" % rejected, file=sys.stderr)
        del batch[:]

    for case in cases:
        t0 = time.time()
        output = answer(case)
        verdict, score = grade(pb, case, output)
        result = pb.CaseResult(case_id=case.case_id, verdict=verdict, output_text=output)
        if score is not None:
            result.score = score
        result.latency.FromNanoseconds(int((time.time() - t0) * 1e9))
        batch.append(result)
        if len(batch) == 1000:
            flush()
    flush()
    done = stub.CompleteRun(pb.CompleteRunRequest(
        run_id=run.run_id, state=pb.RUN_STATE_COMPLETED), metadata=auth).run
    overall = done.summary.overall
    print("pass rate %.1f%% (%d/%d results, %d missing)"
          % (100.0 * overall.pass_rate, overall.passed_count, overall.result_count,
             overall.missing_count))
    for theme in done.summary.themes:
        print("  %-30s %5.1f%% of %d" % (theme.theme.name or "(no theme)",
                                        100.0 * theme.stats.pass_rate, theme.stats.result_count))

    # 4. Compare with the baseline and print paste-ready release notes.
    if args.baseline_run_id:
        comparison = stub.CompareRuns(pb.CompareRunsRequest(
            baseline_run_id=args.baseline_run_id, candidate_run_id=run.run_id), metadata=auth)
        print("regressions: %d, fixes: %d" % (comparison.regression_count, comparison.fix_count))
        for change in comparison.regressions[:10]:
            print("  regressed %s [%s]: %s" % (change.case_id, change.theme.name,
                                               change.input_snippet))
        print()
        print(comparison.release_notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
