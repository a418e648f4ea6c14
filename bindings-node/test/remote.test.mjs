import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { Orchestrator, AgentError, InvalidRequestError } from '../index.mjs'

// One local server plays an agent service (POST /agent) and an
// OpenAI-compatible model (POST /v1/chat/completions).
const seen = { agent: [], chat: [] }
const server = createServer((req, res) => {
  let body = ''
  req.on('data', (c) => (body += c))
  req.on('end', () => {
    const json = JSON.parse(body || '{}')
    res.setHeader('content-type', 'application/json')
    if (req.url === '/agent') {
      seen.agent.push({ json, auth: req.headers['x-api-key'] })
      res.end(JSON.stringify({ content: `service saw ${json.task}`, data: { step: json.step } }))
    } else if (req.url === '/v1/chat/completions') {
      seen.chat.push(json)
      const last = json.messages.at(-1)
      res.end(
        JSON.stringify({
          id: 'c1',
          object: 'chat.completion',
          model: json.model,
          choices: [{ index: 0, message: { role: 'assistant', content: `model says: ${last.content}` }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
        }),
      )
    } else {
      res.statusCode = 404
      res.end('{}')
    }
  })
})
await new Promise((r) => server.listen(0, '127.0.0.1', r))
const base = `http://127.0.0.1:${server.address().port}`
after(() => server.close())

test('an HTTP agent service takes part in a run', async () => {
  const orch = new Orchestrator()
  orch.addAgent('local', (input) => `local ${input.task}`)
  orch.addHttpAgent('remote', `${base}/agent`, { description: 'a service', timeoutMs: 5000, headers: { 'X-Api-Key': 'k1' } })
  assert.deepEqual(orch.agents().map((a) => a.name), ['local', 'remote'])
  const r = await orch.run('sequential', 'job', { agents: ['local', 'remote'] })
  assert.equal(r.status, 'completed')
  assert.equal(r.output, 'service saw local job')
  assert.equal(seen.agent.at(-1).auth, 'k1')
  assert.equal(seen.agent.at(-1).json.agent, 'remote')
})

test('an OpenAI-compatible model is an agent, with usage counted', async () => {
  const orch = new Orchestrator()
  orch.addOpenAIAgent({ name: 'llm', description: 'a model', baseUrl: `${base}/v1`, model: 'test-model', stream: false, systemPrompt: 'Be brief.' })
  const r = await orch.run('sequential', 'hello', { agents: ['llm'] })
  assert.equal(r.status, 'completed')
  assert.equal(r.output, 'model says: hello')
  assert.equal(r.usage.totalTokens, 10)
  const request = seen.chat.at(-1)
  assert.equal(request.model, 'test-model')
  assert.equal(request.messages[0].role, 'system')
})

test('an unreachable service fails the call with agent_failed', async () => {
  const orch = new Orchestrator()
  orch.addHttpAgent('gone', 'http://127.0.0.1:1/agent', { timeoutMs: 1000 })
  const r = await orch.run('sequential', 'x', { agents: ['gone'] })
  assert.equal(r.status, 'failed')
  assert.equal(r.error.code, 'agent_failed')
})

test('bad remote configurations are rejected with typed errors', async () => {
  const orch = new Orchestrator()
  assert.throws(() => orch.addOpenAIAgent({ name: 'x', baseUrl: base, model: 'm', noSuchOption: 1 }), InvalidRequestError)
  await assert.rejects(orch.addA2aAgent({ cardUrl: 'http://127.0.0.1:1/.well-known/agent-card.json', timeoutMs: 500 }), AgentError)
})
