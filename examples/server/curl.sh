#!/usr/bin/env bash
# One curl call per endpoint of orchestra-server, against the built-in demo agents.
#
# Start the server first (no config needed):
#   cargo run --release -p orchestra-server
# then:
#   examples/server/curl.sh            # or BASE=http://host:port examples/server/curl.sh
#
# With API keys configured, also export API_KEY=<key>.
set -euo pipefail
BASE="${BASE:-http://127.0.0.1:8001}"
AUTH=()
[ -n "${API_KEY:-}" ] && AUTH=(-H "Authorization: Bearer $API_KEY")
JSON=(-H 'Content-Type: application/json')
show() { printf '\n### %s\n' "$*"; }

show "GET /health"
curl -s "${AUTH[@]}" "$BASE/health"; echo

show "GET /agents"
curl -s "${AUTH[@]}" "$BASE/agents"; echo

show "GET /patterns (names only)"
curl -s "${AUTH[@]}" "$BASE/patterns" | grep -o '"name":"[a-z_]*"'

show "POST /orchestrate sequential"
curl -s "${AUTH[@]}" "${JSON[@]}" -X POST "$BASE/orchestrate" \
  -d '{"pattern":"sequential","task":"Write about tides","agents":["demo_researcher","demo_writer"],"session_id":"demo-1"}'
echo

show "POST /orchestrate concurrent (a summarizer agent aggregates)"
curl -s "${AUTH[@]}" "${JSON[@]}" -X POST "$BASE/orchestrate" \
  -d '{"pattern":"concurrent","task":"Tides","agents":["demo_researcher","demo_writer"],"options":{"aggregator":"agent","summarizer":"demo_summarizer"}}'
echo

show "POST /orchestrate handoff (triage hands the refund to billing)"
curl -s "${AUTH[@]}" "${JSON[@]}" -X POST "$BASE/orchestrate" \
  -d '{"pattern":"handoff","task":"Where is my refund?","agents":["demo_triage","demo_billing"]}'
echo

show "POST /orchestrate group_chat (ends when the critic says APPROVED)"
curl -s "${AUTH[@]}" "${JSON[@]}" -X POST "$BASE/orchestrate" \
  -d '{"pattern":"group_chat","task":"A slogan for a bakery","agents":["demo_writer","demo_critic"],"options":{"termination":{"text_mention":"APPROVED"},"max_rounds":6}}'
echo

show "POST /orchestrate dynamic (the heuristic planner picks the agents)"
curl -s "${AUTH[@]}" "${JSON[@]}" -X POST "$BASE/orchestrate" \
  -d '{"pattern":"dynamic","task":"Research tides, then write an article"}'
echo

show "POST /orchestrate/stream (Server-Sent Events)"
curl -sN "${AUTH[@]}" "${JSON[@]}" -X POST "$BASE/orchestrate/stream" \
  -d '{"pattern":"sequential","task":"Write about tides","agents":["demo_researcher","demo_writer"]}'

show "POST /orchestrate continuing session demo-1"
curl -s "${AUTH[@]}" "${JSON[@]}" -X POST "$BASE/orchestrate" \
  -d '{"pattern":"sequential","task":"Now shorter","agents":["demo_writer"],"session_id":"demo-1"}'
echo

show "GET /sessions"
curl -s "${AUTH[@]}" "$BASE/sessions?limit=5"; echo

show "GET /sessions/demo-1"
curl -s "${AUTH[@]}" "$BASE/sessions/demo-1"; echo

show "DELETE /sessions/demo-1 (204), then again (404)"
curl -s -o /dev/null -w '%{http_code}\n' "${AUTH[@]}" -X DELETE "$BASE/sessions/demo-1"
curl -s -w '\n%{http_code}\n' "${AUTH[@]}" -X DELETE "$BASE/sessions/demo-1"

show "An invalid request (unknown agent: 400)"
curl -s -w '\n%{http_code}\n' "${AUTH[@]}" "${JSON[@]}" -X POST "$BASE/orchestrate" \
  -d '{"pattern":"sequential","task":"x","agents":["ghost"]}'

show "GET /metrics (run counters)"
curl -s "${AUTH[@]}" "$BASE/metrics" | grep '^orchestra_runs_total'

show "GET /openapi.json (paths)"
curl -s "${AUTH[@]}" "$BASE/openapi.json" | grep -o '"/[a-z/{}_.]*":' | sort -u
