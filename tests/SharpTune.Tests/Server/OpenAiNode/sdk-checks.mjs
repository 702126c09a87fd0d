// Drives a running SharpTune server with the official OpenAI Node SDK (the version package-lock.json pins) through
// what the server documents (docs/serving.md, docs/fine-tuning-api.md, docs/batch-api.md), and prints one JSON line
// per check: {"name", "ok", "detail"}. Run by OpenAiNodeSdkTests.cs with:
//   SHARPTUNE_URL=http://127.0.0.1:PORT/v1 SHARPTUNE_KEY=… SHARPTUNE_MODEL=stories260K SHARPTUNE_ADAPTER=tiny-a node sdk-checks.mjs
import OpenAI, { toFile } from 'openai';

const baseURL = process.env.SHARPTUNE_URL;
const apiKey = process.env.SHARPTUNE_KEY;
const model = process.env.SHARPTUNE_MODEL;
const adapter = process.env.SHARPTUNE_ADAPTER;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });

function report(name, ok, detail = '') {
  console.log(JSON.stringify({ name, ok: !!ok, detail: String(detail).slice(0, 600) }));
}

/** Runs one check: the body returns [ok, detail] or throws (a failure, with the error as detail). */
async function check(name, body) {
  try {
    const [ok, detail] = await body();
    report(name, ok, detail);
  } catch (e) {
    report(name, false, `${e?.constructor?.name}: ${e?.status ?? ''} ${e?.message ?? e}`);
  }
}

/** Expects the call to fail with the SDK's error class and, where given, status, code and param. */
async function expectError(name, call, errorClass, { status, code, param } = {}) {
  await check(name, async () => {
    try {
      await call();
      return [false, 'no error'];
    } catch (e) {
      const detail = `${e?.constructor?.name} status=${e?.status} code=${e?.code} param=${e?.param} type=${e?.type} message=${e?.message}`;
      const ok = e instanceof errorClass && (status === undefined || e.status === status) &&
        (code === undefined || e.code === code) && (param === undefined || e.param === param);
      return [ok, detail];
    }
  });
}

// The fields each type of openai-node (the pinned version's src/resources/**/*.ts) declares without `?`: a client
// typed on them reads these from every object of that type. `output_text` is left out of Response (the SDK adds it).
const required = {
  Model: 'id created object owned_by',
  ChatCompletion: 'id choices created model object',
  'ChatCompletion.Choice': 'finish_reason index logprobs message',
  ChatCompletionMessage: 'content refusal role',
  ChatCompletionMessageToolCall: 'id function type',
  ChatCompletionTokenLogprob: 'token bytes logprob top_logprobs',
  ChatCompletionChunk: 'id choices created model object',
  'ChatCompletionChunk.Choice': 'delta index finish_reason',
  Completion: 'id choices created model object',
  CompletionChoice: 'finish_reason index logprobs text',
  CompletionUsage: 'completion_tokens prompt_tokens total_tokens',
  CreateEmbeddingResponse: 'data model object usage',
  Embedding: 'embedding index object',
  Response: 'id created_at error incomplete_details instructions metadata model object output parallel_tool_calls temperature tool_choice tools top_p',
  ResponseOutputMessage: 'id content role status type',
  ResponseOutputText: 'annotations text type',
  ResponseFunctionToolCall: 'arguments call_id name type',
  ResponseUsage: 'input_tokens input_tokens_details output_tokens output_tokens_details total_tokens',
  'ResponseUsage.InputTokensDetails': 'cached_tokens',
  'ResponseUsage.OutputTokensDetails': 'reasoning_tokens',
  ResponseFunctionCallArgumentsDeltaEvent: 'delta item_id output_index sequence_number type',
  ResponseFunctionCallArgumentsDoneEvent: 'arguments item_id output_index sequence_number type',
  ResponseInputMessageItem: 'id content role type',
  ResponseTextDeltaEvent: 'content_index delta item_id logprobs output_index sequence_number type',
  ResponseTextDoneEvent: 'content_index item_id logprobs output_index sequence_number text type',
  ResponseContentPartAddedEvent: 'content_index item_id output_index part sequence_number type',
  ResponseOutputItemAddedEvent: 'item output_index sequence_number type',
  ResponseCreatedEvent: 'response sequence_number type',
  FileObject: 'id bytes created_at filename object purpose status',
  FileDeleted: 'id deleted object',
  FineTuningJob: 'id created_at error fine_tuned_model finished_at hyperparameters model object organization_id result_files seed status trained_tokens training_file validation_file',
  FineTuningJobEvent: 'id created_at level message object',
  FineTuningJobCheckpoint: 'id created_at fine_tuned_model_checkpoint fine_tuning_job_id metrics object step_number',
  Batch: 'id completion_window created_at endpoint input_file_id object status',
  BatchRequestCounts: 'completed failed total',
  ModelDeleted: 'id deleted object',
};
const seen = {};
/** Remembers an object the server returned as being of openai-node type `type`, for the shape checks at the end. */
function saw(type, value) {
  if (value && typeof value === 'object') (seen[type] ??= []).push(value);
  return value;
}

const user = (content) => [{ role: 'user', content }];
const greedy = { model, temperature: 0 };
function chatSeen(c) {
  saw('ChatCompletion', c);
  saw('CompletionUsage', c.usage);
  for (const ch of c.choices ?? []) { saw('ChatCompletion.Choice', ch); saw('ChatCompletionMessage', ch.message); }
  return c;
}
function responseSeen(r) {
  saw('Response', r);
  saw('ResponseUsage', r.usage);
  saw('ResponseUsage.InputTokensDetails', r.usage?.input_tokens_details);
  saw('ResponseUsage.OutputTokensDetails', r.usage?.output_tokens_details);
  for (const o of r.output ?? []) {
    if (o.type === 'message') { saw('ResponseOutputMessage', o); for (const p of o.content) saw('ResponseOutputText', p); }
    if (o.type === 'function_call') saw('ResponseFunctionToolCall', o);
  }
  return r;
}
async function fileSeen(promise) { return saw('FileObject', await promise); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function poll(get, done, ms = 60_000) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await get();
    if (done(value) || Date.now() > end) return value;
    await sleep(100);
  }
}

// ---------------------------------------------------------------- models
await check('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(saw('Model', m).id);
  return [ids.includes(model) && (!adapter || ids.includes(adapter)), ids.join(',')];
});
await check('models.retrieve', async () => {
  const m = saw('Model', await client.models.retrieve(model));
  return [m.id === model && m.object === 'model' && typeof m.created === 'number' && typeof m.owned_by === 'string', JSON.stringify(m)];
});
await expectError('models.retrieve unknown -> NotFoundError', () => client.models.retrieve('no-such-model'), OpenAI.NotFoundError, { status: 404 });

// ---------------------------------------------------------------- chat completions
await check('chat.create plain', async () => {
  const c = chatSeen(await client.chat.completions.create({ ...greedy, messages: user('Tell me about Lily.'), max_tokens: 8 }));
  const ch = c.choices[0];
  return [c.object === 'chat.completion' && c.id.startsWith('chatcmpl-') && ch.message.role === 'assistant' &&
    typeof ch.message.content === 'string' && ['stop', 'length'].includes(ch.finish_reason) &&
    c.usage.total_tokens === c.usage.prompt_tokens + c.usage.completion_tokens && c.model === model, JSON.stringify(c)];
});
await check('chat.create with adapter model', async () => {
  if (!adapter) return [true, 'no adapter'];
  const c = await client.chat.completions.create({ ...greedy, model: adapter, messages: user('Tell me about Lily.'), max_tokens: 6 });
  return [c.model === adapter && c.choices.length === 1, JSON.stringify(c)];
});
await check('chat.create max_completion_tokens', async () => {
  const c = await client.chat.completions.create({ ...greedy, messages: user('Once upon a time'), max_completion_tokens: 3 });
  return [c.usage.completion_tokens <= 3 && c.choices[0].finish_reason === 'length', JSON.stringify(c.usage) + c.choices[0].finish_reason];
});
await check('chat.create n=2 seed', async () => {
  const body = { model, temperature: 1, seed: 7, n: 2, messages: user('Tom had a dog.'), max_tokens: 6 };
  const a = await client.chat.completions.create(body);
  const b = await client.chat.completions.create(body);
  return [a.choices.length === 2 && a.choices.map((c) => c.index).join() === '0,1' &&
    a.choices.map((c) => c.message.content).join('|') === b.choices.map((c) => c.message.content).join('|'),
    JSON.stringify([a.choices, b.choices])];
});
await check('chat.create stop', async () => {
  const whole = await client.chat.completions.create({ ...greedy, messages: user('Tell me about Lily.'), max_tokens: 12 });
  const text = whole.choices[0].message.content;
  const word = text.trim().split(/\s+/)[1];
  if (!word) return [false, `too short: ${text}`];
  const c = await client.chat.completions.create({ ...greedy, messages: user('Tell me about Lily.'), max_tokens: 12, stop: [word] });
  return [!c.choices[0].message.content.includes(word) && c.choices[0].finish_reason === 'stop' && text.startsWith(c.choices[0].message.content),
    `${JSON.stringify(text)} stop ${word} -> ${JSON.stringify(c.choices[0].message.content)}`];
});
await check('chat.create logprobs top_logprobs', async () => {
  const c = chatSeen(await client.chat.completions.create({ ...greedy, messages: user('Lily'), max_tokens: 4, logprobs: true, top_logprobs: 2 }));
  for (const t of c.choices[0].logprobs?.content ?? []) saw('ChatCompletionTokenLogprob', t);
  const lp = c.choices[0].logprobs?.content;
  return [Array.isArray(lp) && lp.length === c.usage.completion_tokens && lp.every((t) => typeof t.token === 'string' &&
    t.logprob <= 0 && Array.isArray(t.bytes) && t.top_logprobs.length === 2 && t.top_logprobs[0].logprob === t.logprob),
    JSON.stringify(c.choices[0])];
});
await check('chat.create stream include_usage', async () => {
  const stream = await client.chat.completions.create({ ...greedy, messages: user('Tell me about Lily.'), max_tokens: 6, stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null, chunks = 0, ids = new Set();
  for await (const chunk of stream) {
    chunks++;
    ids.add(saw('ChatCompletionChunk', chunk).id);
    for (const ch of chunk.choices) saw('ChatCompletionChunk.Choice', ch);
    if (chunk.object !== 'chat.completion.chunk') return [false, JSON.stringify(chunk)];
    for (const ch of chunk.choices) {
      text += ch.delta.content ?? '';
      finish = ch.finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  const whole = await client.chat.completions.create({ ...greedy, messages: user('Tell me about Lily.'), max_tokens: 6 });
  return [text === whole.choices[0].message.content && finish === whole.choices[0].finish_reason && usage?.completion_tokens === whole.usage.completion_tokens && ids.size === 1,
    `${chunks} chunks ${JSON.stringify(text)} ${finish} ${JSON.stringify(usage)}`];
});
await check('chat.stream helper finalChatCompletion', async () => {
  const stream = client.chat.completions.stream({ ...greedy, messages: user('Tell me about Lily.'), max_tokens: 6, stream_options: { include_usage: true } });
  let deltas = '';
  stream.on('content', (delta) => { deltas += delta; });
  const final = await stream.finalChatCompletion();
  return [final.choices[0].message.content === deltas && final.usage?.completion_tokens > 0, JSON.stringify(final)];
});
const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Rome'] } }, required: ['city'], additionalProperties: false },
    strict: true,
  },
};
await check('chat.create tools tool_choice named', async () => {
  const c = chatSeen(await client.chat.completions.create({ ...greedy, messages: user('Weather in Paris?'), tools: [weather], tool_choice: { type: 'function', function: { name: 'get_weather' } }, max_tokens: 120 }));
  for (const t of c.choices[0].message.tool_calls ?? []) saw('ChatCompletionMessageToolCall', t);
  const call = c.choices[0].message.tool_calls?.[0];
  return [call?.type === 'function' && call.function.name === 'get_weather' && call.id && typeof JSON.parse(call.function.arguments).city === 'string' &&
    c.choices[0].finish_reason === 'stop', JSON.stringify(c.choices[0])];
});
await check('chat.create tools required streamed', async () => {
  const stream = await client.chat.completions.create({ ...greedy, messages: user('Weather in Paris?'), tools: [weather], tool_choice: 'required', max_tokens: 120, stream: true });
  let args = '', name = '', id = '', finish = null;
  for await (const chunk of stream)
    for (const ch of chunk.choices) {
      for (const t of ch.delta.tool_calls ?? []) { args += t.function?.arguments ?? ''; name += t.function?.name ?? ''; id ||= t.id; }
      finish = ch.finish_reason ?? finish;
    }
  return [name === 'get_weather' && id && typeof JSON.parse(args).city === 'string' && finish === 'tool_calls', `${id} ${name} ${args} ${finish}`];
});
await check('chat.runTools', async () => {
  let called = 0;
  const runner = client.chat.completions.runTools({
    ...greedy,
    messages: user('Weather in Paris?'),
    max_tokens: 120,
    tool_choice: 'required',
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: weather.function.parameters, function: (a) => { called++; return { temperature: 20, city: JSON.parse(a).city }; } } }],
  }, { maxChatCompletions: 2 });
  await runner.done();
  const messages = runner.messages;
  return [called >= 1 && messages.some((m) => m.role === 'tool'), `called ${called}; ${JSON.stringify(messages).slice(0, 400)}`];
});
await check('chat.create response_format json_object', async () => {
  const c = await client.chat.completions.create({ ...greedy, messages: user('Give JSON.'), response_format: { type: 'json_object' }, max_tokens: 30 });
  const content = c.choices[0].message.content;
  if (c.choices[0].finish_reason === 'length') return [true, `cut at max_tokens: ${content}`];
  JSON.parse(content);
  return [true, content];
});
const personSchema = {
  type: 'json_schema',
  json_schema: {
    name: 'person',
    strict: true,
    schema: { type: 'object', properties: { name: { type: 'string', enum: ['Lily', 'Tom'] }, age: { type: 'integer', enum: [3, 4, 5] } }, required: ['name', 'age'], additionalProperties: false },
  },
};
await check('chat.completions.parse json_schema', async () => {
  const c = await client.chat.completions.parse({ ...greedy, messages: user('Make a person.'), response_format: personSchema, max_tokens: 120 });
  const parsed = c.choices[0].message.parsed;
  return [parsed && typeof parsed.name === 'string' && Number.isInteger(parsed.age), JSON.stringify(c.choices[0].message)];
});
await check('chat.completions.parse strict tool', async () => {
  const c = await client.chat.completions.parse({ ...greedy, messages: user('Weather in Paris?'), tools: [weather], tool_choice: 'required', max_tokens: 120 });
  const call = c.choices[0].message.tool_calls?.[0];
  return [call?.function.parsed_arguments && typeof call.function.parsed_arguments.city === 'string', JSON.stringify(c.choices[0].message)];
});
await check('chat.stream helper json_schema parsed', async () => {
  const stream = client.chat.completions.stream({ ...greedy, messages: user('Make a person.'), response_format: personSchema, max_tokens: 120 });
  const final = await stream.finalChatCompletion();
  const parsed = final.choices[0].message.parsed;
  return [parsed && typeof parsed.name === 'string', JSON.stringify(final.choices[0].message)];
});

// ---------------------------------------------------------------- completions
await check('completions.create echo logprobs', async () => {
  const c = saw('Completion', await client.completions.create({ ...greedy, prompt: 'Once upon a time', max_tokens: 4, echo: true, logprobs: 1 }));
  const ch = saw('CompletionChoice', c.choices[0]);
  saw('CompletionUsage', c.usage);
  return [c.object === 'text_completion' && ch.text.startsWith('Once upon a time') && ch.logprobs.tokens.length === c.usage.prompt_tokens + c.usage.completion_tokens - (ch.logprobs.tokens.length - ch.logprobs.token_logprobs.length) &&
    ch.logprobs.text_offset.length === ch.logprobs.tokens.length && ['stop', 'length'].includes(ch.finish_reason), JSON.stringify(c)];
});
await check('completions.create prompts array', async () => {
  const c = await client.completions.create({ ...greedy, prompt: ['Lily', 'Tom'], max_tokens: 3, n: 1 });
  return [c.choices.length === 2 && c.choices[1].index === 1, JSON.stringify(c.choices)];
});
await check('completions.create stream', async () => {
  const stream = await client.completions.create({ ...greedy, prompt: 'Once upon a time', max_tokens: 5, stream: true, stream_options: { include_usage: true } });
  let text = '', usage = null;
  for await (const chunk of stream) { for (const ch of chunk.choices) text += ch.text; if (chunk.usage) usage = chunk.usage; }
  const whole = await client.completions.create({ ...greedy, prompt: 'Once upon a time', max_tokens: 5 });
  return [text === whole.choices[0].text && usage?.completion_tokens === whole.usage.completion_tokens, `${JSON.stringify(text)} ${JSON.stringify(usage)}`];
});

// ---------------------------------------------------------------- embeddings
await check('embeddings.create (SDK default base64)', async () => {
  const e = saw('CreateEmbeddingResponse', await client.embeddings.create({ model, input: ['first text', 'second text'] }));
  e.data.forEach((d) => saw('Embedding', d));
  const v = e.data[0].embedding;
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return [e.object === 'list' && e.data.length === 2 && Array.isArray(v) && v.length > 0 && Math.abs(norm - 1) < 1e-3 && e.usage.prompt_tokens > 0, `dim ${v.length} norm ${norm}`];
});
await check('embeddings.create float dimensions', async () => {
  const e = await client.embeddings.create({ model, input: 'first text', encoding_format: 'float', dimensions: 8 });
  return [e.data[0].embedding.length === 8, JSON.stringify(e).slice(0, 200)];
});

// ---------------------------------------------------------------- responses
let storedResponse;
await check('responses.create', async () => {
  const r = await client.responses.create({ model, input: 'Tell me about Lily.', max_output_tokens: 16, temperature: 0 });
  storedResponse = responseSeen(r);
  return [r.object === 'response' && r.id.startsWith('resp_') && ['completed', 'incomplete'].includes(r.status) && typeof r.output_text === 'string' &&
    r.output_text.length > 0 && r.usage.total_tokens === r.usage.input_tokens + r.usage.output_tokens, JSON.stringify(r).slice(0, 500)];
});
await check('responses.retrieve', async () => {
  const r = await client.responses.retrieve(storedResponse.id);
  return [r.id === storedResponse.id && r.output_text === storedResponse.output_text, JSON.stringify(r).slice(0, 300)];
});
await check('responses.inputItems.list (auto-paginated)', async () => {
  const items = [];
  for await (const item of client.responses.inputItems.list(storedResponse.id, { limit: 1 })) items.push(saw('ResponseInputMessageItem', item));
  return [items.length === 1 && items[0].type === 'message' && items[0].role === 'user', JSON.stringify(items)];
});
await check('responses.create previous_response_id', async () => {
  const r = await client.responses.create({ model, input: 'And Tom?', previous_response_id: storedResponse.id, max_output_tokens: 16, temperature: 0 });
  return [r.previous_response_id === storedResponse.id && r.usage.input_tokens > storedResponse.usage.input_tokens, JSON.stringify(r.usage)];
});
await check('responses.create stream (events)', async () => {
  const stream = await client.responses.create({ model, input: 'Tell me about Lily.', max_output_tokens: 16, temperature: 0, stream: true });
  let text = '', types = [], final = null, seq = -1, ordered = true;
  for await (const event of stream) {
    types.push(event.type);
    const eventType = { 'response.output_text.delta': 'ResponseTextDeltaEvent', 'response.output_text.done': 'ResponseTextDoneEvent', 'response.content_part.added': 'ResponseContentPartAddedEvent', 'response.output_item.added': 'ResponseOutputItemAddedEvent', 'response.created': 'ResponseCreatedEvent' }[event.type];
    if (eventType) saw(eventType, event);
    if (event.sequence_number !== seq + 1) ordered = false;
    seq = event.sequence_number;
    if (event.type === 'response.output_text.delta') text += event.delta;
    if (event.type === 'response.completed' || event.type === 'response.incomplete') final = event.response;
  }
  const finalText = final?.output.flatMap((o) => o.content ?? []).map((p) => p.text).join('');
  return [ordered && types[0] === 'response.created' && final && finalText === text, `${types.join(',')} ${JSON.stringify(text)}`];
});
await check('responses.stream helper finalResponse', async () => {
  const stream = client.responses.stream({ model, input: 'Tell me about Lily.', max_output_tokens: 16, temperature: 0 });
  let deltas = '';
  stream.on('response.output_text.delta', (e) => { deltas += e.delta; });
  const final = await stream.finalResponse();
  return [final.output_text === deltas && deltas.length > 0, JSON.stringify(final).slice(0, 300)];
});
await check('responses.create function tool', async () => {
  const r = await client.responses.create({
    model, input: 'Weather in Paris?', temperature: 0, max_output_tokens: 120, tool_choice: 'required',
    tools: [{ type: 'function', name: 'get_weather', parameters: weather.function.parameters, strict: true }],
  });
  responseSeen(r);
  const call = r.output.find((o) => o.type === 'function_call');
  return [call && call.name === 'get_weather' && call.call_id && typeof JSON.parse(call.arguments).city === 'string', JSON.stringify(r.output)];
});
await check('responses.parse text.format json_schema', async () => {
  const r = await client.responses.parse({
    model, input: 'Make a person.', temperature: 0, max_output_tokens: 120,
    text: { format: { type: 'json_schema', name: 'person', strict: true, schema: personSchema.json_schema.schema } },
  });
  return [r.output_parsed && typeof r.output_parsed.name === 'string', JSON.stringify(r.output).slice(0, 400)];
});
await check('responses background + cancel', async () => {
  const r = await client.responses.create({ model, input: 'Once upon a time', background: true, max_output_tokens: 400, temperature: 0 });
  if (!['queued', 'in_progress'].includes(r.status)) return [false, `created ${r.status}`];
  const cancelled = await client.responses.cancel(r.id);
  const after = await client.responses.retrieve(r.id);
  return [['cancelled', 'completed', 'incomplete'].includes(cancelled.status) && after.status === cancelled.status, `${r.status} -> ${cancelled.status} / ${after.status}`];
});
await check('responses background poll to completion', async () => {
  const r = await client.responses.create({ model, input: 'Lily', background: true, max_output_tokens: 16, temperature: 0 });
  const done = await poll(() => client.responses.retrieve(r.id), (x) => !['queued', 'in_progress'].includes(x.status));
  return [['completed', 'incomplete'].includes(done.status) && done.output_text.length > 0, `${done.status} ${done.output_text}`];
});
await check('responses.delete', async () => {
  const d = await client.responses.delete(storedResponse.id);
  let gone = false;
  try { await client.responses.retrieve(storedResponse.id); } catch (e) { gone = e instanceof OpenAI.NotFoundError; }
  return [gone, JSON.stringify(d ?? null)];
});

// ---------------------------------------------------------------- files
const trainingLines = Array.from({ length: 4 }, (_, i) => JSON.stringify({ prompt: `Tom had a toy number ${i}.`, completion: 'Lily saw a big red ball.' })).join('\n') + '\n';
let trainingFile;
// Jobs that must still be running when the test acts on them train long (320 steps); they are cancelled, never finished.
const longLines = Array.from({ length: 32 }, (_, i) => JSON.stringify({ prompt: `Tom had a toy number ${i}.`, completion: 'Lily saw a big red ball.' })).join('\n') + '\n';
let longFile;
await check('files.create fine-tune', async () => {
  trainingFile = await fileSeen(client.files.create({ file: await toFile(Buffer.from(trainingLines), 'train.jsonl'), purpose: 'fine-tune' }));
  return [trainingFile.id.startsWith('file-') && trainingFile.object === 'file' && trainingFile.bytes === Buffer.byteLength(trainingLines) &&
    trainingFile.filename === 'train.jsonl' && trainingFile.purpose === 'fine-tune', JSON.stringify(trainingFile)];
});
await check('files.create (a longer file)', async () => {
  longFile = await client.files.create({ file: await toFile(Buffer.from(longLines), 'long.jsonl'), purpose: 'fine-tune' });
  return [longFile.bytes === Buffer.byteLength(longLines), JSON.stringify(longFile)];
});
await check('files.retrieve', async () => {
  const f = saw('FileObject', await client.files.retrieve(trainingFile.id));
  return [f.id === trainingFile.id && f.bytes === trainingFile.bytes, JSON.stringify(f)];
});
await check('files.content', async () => {
  const response = await client.files.content(trainingFile.id);
  const text = await response.text();
  return [text === trainingLines, text.slice(0, 100)];
});
await check('files.list purpose + auto-pagination', async () => {
  const extra = await client.files.create({ file: await toFile(Buffer.from(trainingLines), 'second.jsonl'), purpose: 'fine-tune' });
  const ids = [];
  for await (const f of client.files.list({ purpose: 'fine-tune', limit: 1 })) ids.push(f.id);
  await client.files.delete(extra.id);
  return [ids.includes(trainingFile.id) && ids.includes(extra.id) && new Set(ids).size === ids.length, ids.join(',')];
});
await check('files.delete', async () => {
  const f = await client.files.create({ file: await toFile(Buffer.from(trainingLines), 'gone.jsonl'), purpose: 'fine-tune' });
  const d = saw('FileDeleted', await client.files.delete(f.id));
  let gone = false;
  try { await client.files.retrieve(f.id); } catch (e) { gone = e instanceof OpenAI.NotFoundError; }
  return [d.id === f.id && d.deleted === true && d.object === 'file' && gone, JSON.stringify(d)];
});

// ---------------------------------------------------------------- fine-tuning
let job;
await check('fine_tuning.jobs.create', async () => {
  job = await client.fineTuning.jobs.create({
    model, training_file: trainingFile.id, suffix: 'sdk', seed: 3, metadata: { run: 'node-sdk' },
    method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 1, batch_size: 2, learning_rate_multiplier: 1 } } },
  });
  saw('FineTuningJob', job);
  return [job.id.startsWith('ftjob-') && job.object === 'fine_tuning.job' && job.model === model && job.training_file === trainingFile.id && job.metadata?.run === 'node-sdk', JSON.stringify(job)];
});
await check('fine_tuning.jobs.retrieve until succeeded', async () => {
  const done = await poll(() => client.fineTuning.jobs.retrieve(job.id), (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status), 120_000);
  job = saw('FineTuningJob', done);
  return [done.status === 'succeeded' && typeof done.fine_tuned_model === 'string' && done.trained_tokens > 0 && done.finished_at >= done.created_at, JSON.stringify(done)];
});
await check('fine_tuning.jobs.list (auto-paginated, metadata filter)', async () => {
  const ids = [];
  for await (const j of client.fineTuning.jobs.list({ limit: 1, metadata: { run: 'node-sdk' } })) ids.push(j.id);
  return [ids.includes(job.id), ids.join(',')];
});
await check('fine_tuning.jobs.listEvents', async () => {
  const events = [];
  for await (const e of client.fineTuning.jobs.listEvents(job.id, { limit: 5 })) events.push(saw('FineTuningJobEvent', e));
  return [events.length > 0 && events.every((e) => e.object === 'fine_tuning.job.event' && typeof e.message === 'string' && typeof e.created_at === 'number') &&
    events.some((e) => e.type === 'metrics'), JSON.stringify(events.slice(0, 3))];
});
await check('fine_tuning.jobs.checkpoints.list', async () => {
  const cps = [];
  for await (const c of client.fineTuning.jobs.checkpoints.list(job.id)) cps.push(saw('FineTuningJobCheckpoint', c));
  return [cps.length > 0 && cps.every((c) => c.object === 'fine_tuning.job.checkpoint' && c.fine_tuning_job_id === job.id && typeof c.step_number === 'number' && c.metrics),
    JSON.stringify(cps)];
});
await check('chat with the fine-tuned model', async () => {
  const c = await client.chat.completions.create({ model: job.fine_tuned_model, messages: user('Tom had a toy number 1.'), max_tokens: 4, temperature: 0 });
  return [c.model === job.fine_tuned_model, JSON.stringify(c.choices[0])];
});
await check('fine_tuning.jobs.cancel', async () => {
  const j = await client.fineTuning.jobs.create({ model, training_file: longFile.id, hyperparameters: { n_epochs: 10, batch_size: 1 } });
  const c = await client.fineTuning.jobs.cancel(j.id);
  const after = await poll(() => client.fineTuning.jobs.retrieve(j.id), (x) => x.status === 'cancelled', 30_000);
  return [after.status === 'cancelled' && c.id === j.id, `${c.status} / ${after.status}`];
});
await expectError('fine_tuning.jobs.cancel finished -> BadRequestError', () => client.fineTuning.jobs.cancel(job.id), OpenAI.BadRequestError, { status: 400 });

// ---------------------------------------------------------------- batches
const batchLines = ['a', 'b'].map((id) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: { model, messages: user(`Story ${id}`), max_tokens: 4, temperature: 0 } })).join('\n') + '\n';
let batch;
await check('batches.create', async () => {
  const file = await client.files.create({ file: await toFile(Buffer.from(batchLines), 'batch.jsonl'), purpose: 'batch' });
  batch = saw('Batch', await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { run: 'node-sdk' } }));
  return [batch.id.startsWith('batch_') && batch.object === 'batch' && batch.input_file_id === file.id && batch.metadata?.run === 'node-sdk', JSON.stringify(batch)];
});
await check('batches.retrieve until completed + output file', async () => {
  const done = await poll(() => client.batches.retrieve(batch.id), (b) => ['completed', 'failed', 'expired', 'cancelled'].includes(b.status));
  saw('Batch', done);
  saw('BatchRequestCounts', done.request_counts);
  if (done.status !== 'completed') return [false, JSON.stringify(done)];
  const text = await (await client.files.content(done.output_file_id)).text();
  const lines = text.trim().split('\n').map((l) => JSON.parse(l));
  return [done.request_counts.completed === 2 && lines.length === 2 && lines.every((l) => l.response.status_code === 200 && l.response.body.object === 'chat.completion'),
    JSON.stringify(done.request_counts) + text.slice(0, 200)];
});
await check('batches.list (auto-paginated)', async () => {
  const ids = [];
  for await (const b of client.batches.list({ limit: 1 })) ids.push(b.id);
  return [ids.includes(batch.id), ids.join(',')];
});
await check('batches.cancel', async () => {
  const file = await client.files.create({ file: await toFile(Buffer.from(batchLines), 'batch2.jsonl'), purpose: 'batch' });
  const b = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
  const c = await client.batches.cancel(b.id);
  const after = await poll(() => client.batches.retrieve(b.id), (x) => ['cancelled', 'completed'].includes(x.status));
  return [['cancelling', 'cancelled', 'completed'].includes(c.status) && ['cancelled', 'completed'].includes(after.status), `${c.status} / ${after.status}`];
});

// ---------------------------------------------------------------- errors, headers
await expectError('401 -> AuthenticationError', () => new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 }).models.list(), OpenAI.AuthenticationError, { status: 401 });
await expectError('404 model_not_found', () => client.chat.completions.create({ model: 'no-such-model', messages: user('hi') }), OpenAI.NotFoundError, { status: 404, code: 'model_not_found' });
await expectError('400 names param (temperature)', () => client.chat.completions.create({ model, messages: user('hi'), temperature: 5 }), OpenAI.BadRequestError, { status: 400, param: 'temperature' });
await expectError('400 unknown file -> NotFoundError', () => client.files.retrieve('file-nope'), OpenAI.NotFoundError, { status: 404 });
await expectError('fine_tuning.jobs.retrieve unknown -> NotFoundError', () => client.fineTuning.jobs.retrieve('ftjob-nope'), OpenAI.NotFoundError, { status: 404 });
await check('withResponse headers + request_id', async () => {
  const { data, response, request_id } = await client.models.list().withResponse();
  return [response.status === 200 && response.headers.get('content-type')?.startsWith('application/json') && typeof request_id === 'string' && request_id.length > 0,
    `request_id=${request_id} headers=${JSON.stringify([...response.headers])}`];
});
await check('_request_id on a created object', async () => {
  const c = await client.chat.completions.create({ ...greedy, messages: user('hi'), max_tokens: 1 });
  return [typeof c._request_id === 'string' && c._request_id.length > 0, `${c._request_id}`];
});

// ---------------------------------------------------------------- more of what the SDK offers
await check('chat.create n=2 stream include_usage', async () => {
  const stream = await client.chat.completions.create({ model, temperature: 1, seed: 5, n: 2, messages: user('Tom'), max_tokens: 4, stream: true, stream_options: { include_usage: true } });
  const texts = ['', ''], finishes = [null, null];
  let usage = null, usageChunkChoices = null;
  for await (const chunk of stream) {
    for (const ch of chunk.choices) { texts[ch.index] += ch.delta.content ?? ''; finishes[ch.index] = ch.finish_reason ?? finishes[ch.index]; }
    if (chunk.usage) { usage = chunk.usage; usageChunkChoices = chunk.choices.length; }
  }
  return [finishes.every((f) => f) && usage?.completion_tokens > 0 && usageChunkChoices === 0, `${JSON.stringify(texts)} ${finishes} ${JSON.stringify(usage)}`];
});
await check('chat.create stream without include_usage has no usage', async () => {
  const stream = await client.chat.completions.create({ ...greedy, messages: user('Tom'), max_tokens: 3, stream: true });
  let usage = false;
  for await (const chunk of stream) if (chunk.usage) usage = true;
  return [!usage, `usage seen: ${usage}`];
});
await check('chat.create developer message + logit_bias + penalties + user + metadata', async () => {
  const c = await client.chat.completions.create({
    ...greedy, messages: [{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'Tom' }] }], max_tokens: 3,
    logit_bias: { '1': -100 }, presence_penalty: 0.5, frequency_penalty: 0.5, user: 'u1', metadata: { a: 'b' }, store: false, service_tier: 'auto',
  });
  return [c.choices[0].message.content !== undefined, JSON.stringify(c.choices[0])];
});
await check('chat.create parallel_tool_calls false', async () => {
  const c = await client.chat.completions.create({ ...greedy, messages: user('Weather in Paris?'), tools: [weather], tool_choice: 'required', parallel_tool_calls: false, max_tokens: 120 });
  return [c.choices[0].message.tool_calls?.length === 1, JSON.stringify(c.choices[0].message)];
});
await check('chat.stream helper tool call events', async () => {
  const stream = client.chat.completions.stream({ ...greedy, messages: user('Weather in Paris?'), tools: [weather], tool_choice: 'required', max_tokens: 120 });
  let done = null;
  stream.on('tool_calls.function.arguments.done', (e) => { done = e; });
  const final = await stream.finalChatCompletion();
  return [done?.name === 'get_weather' && done.parsed_arguments?.city && final.choices[0].message.tool_calls?.[0]?.function.parsed_arguments?.city, JSON.stringify(done)];
});
await check('chat.runTools streaming', async () => {
  let called = 0;
  const runner = client.chat.completions.runTools({
    ...greedy, stream: true, messages: user('Weather in Paris?'), max_tokens: 120, tool_choice: 'required',
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: weather.function.parameters, function: () => { called++; return 'sunny'; } } }],
  }, { maxChatCompletions: 2 });
  await runner.done();
  return [called >= 1, `called ${called}`];
});
await check('chat.create tool result turn', async () => {
  const c = await client.chat.completions.create({
    ...greedy, max_tokens: 4, tools: [weather],
    messages: [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
    ],
  });
  return [c.choices.length === 1, JSON.stringify(c.choices[0])];
});
await expectError('chat image part -> 400 naming the part', () => client.chat.completions.create({ model, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }] }), OpenAI.BadRequestError, { status: 400, param: 'messages[0].content[0].type' });
await expectError('chat max_tokens past the context -> 400', () => client.chat.completions.create({ model, messages: user('hi'), max_tokens: 100000 }), OpenAI.BadRequestError, { status: 400 });
await expectError('chat.completions.list (stored completions) -> clear error', () => client.chat.completions.list(), OpenAI.APIError);
await check('chat abort mid-stream, server keeps serving', async () => {
  const controller = new AbortController();
  const stream = await client.chat.completions.create({ ...greedy, messages: user('Once upon a time'), max_tokens: 200, stream: true }, { signal: controller.signal });
  let n = 0;
  try { for await (const _ of stream) if (++n === 2) controller.abort(); } catch (e) { if (!(e instanceof OpenAI.APIUserAbortError) && e.name !== 'AbortError') throw e; }
  const c = await client.chat.completions.create({ ...greedy, messages: user('hi'), max_tokens: 2 });
  return [c.choices.length === 1, `aborted after ${n}`];
});
await check('completions token-id prompt', async () => {
  const c = await client.completions.create({ ...greedy, prompt: [1, 400, 300], max_tokens: 3 });
  return [c.usage.prompt_tokens === 3, JSON.stringify(c)];
});
await expectError('completions suffix -> 400 param suffix', () => client.completions.create({ model, prompt: 'a', suffix: 'b', max_tokens: 2 }), OpenAI.BadRequestError, { status: 400, param: 'suffix' });
await check('embeddings token ids + adapter model', async () => {
  const e = await client.embeddings.create({ model: adapter ?? model, input: [[1, 400, 300]], encoding_format: 'float' });
  return [e.data.length === 1 && e.usage.prompt_tokens === 3 && e.model === (adapter ?? model), `${e.model} ${e.usage.prompt_tokens}`];
});
await expectError('embeddings empty input -> 400 param input', () => client.embeddings.create({ model, input: '' }), OpenAI.BadRequestError, { status: 400, param: 'input' });
await check('responses instructions + include logprobs', async () => {
  const r = await client.responses.create({ model, instructions: 'Be brief.', input: [{ role: 'user', content: 'Lily' }], max_output_tokens: 16, temperature: 0, include: ['message.output_text.logprobs'], top_logprobs: 2 });
  const part = r.output.find((o) => o.type === 'message')?.content[0];
  return [r.instructions === 'Be brief.' && Array.isArray(part?.logprobs) && part.logprobs.length > 0 && part.logprobs[0].top_logprobs.length === 2, JSON.stringify(part).slice(0, 300)];
});
await check('responses text.format json_object', async () => {
  const r = await client.responses.create({ model, input: 'Give JSON.', max_output_tokens: 64, temperature: 0, text: { format: { type: 'json_object' } } });
  if (r.status === 'incomplete') return [true, 'cut at max_output_tokens'];
  JSON.parse(r.output_text);
  return [r.text?.format?.type === 'json_object', r.output_text];
});
await check('responses function_call_output turn', async () => {
  const first = await client.responses.create({ model, input: 'Weather in Paris?', temperature: 0, max_output_tokens: 120, tool_choice: 'required', tools: [{ type: 'function', name: 'get_weather', parameters: weather.function.parameters, strict: true }] });
  const call = first.output.find((o) => o.type === 'function_call');
  const second = await client.responses.create({ model, previous_response_id: first.id, input: [{ type: 'function_call_output', call_id: call.call_id, output: 'sunny' }], max_output_tokens: 16, temperature: 0 });
  return [['completed', 'incomplete'].includes(second.status), second.output_text];
});
await expectError('responses conversation -> 400 param conversation', () => client.responses.create({ model, input: 'hi', conversation: 'conv_1' }), OpenAI.BadRequestError, { status: 400, param: 'conversation' });
await expectError('responses.cancel of a foreground response -> 400', async () => {
  const r = await client.responses.create({ model, input: 'hi', max_output_tokens: 16 });
  await client.responses.cancel(r.id);
}, OpenAI.BadRequestError, { status: 400 });
await expectError('responses.retrieve unknown -> NotFoundError', () => client.responses.retrieve('resp_nope'), OpenAI.NotFoundError, { status: 404 });
await check('responses background stream + resume (responses.stream response_id, starting_after)', async () => {
  const stream = await client.responses.create({ model, input: 'Lily', background: true, stream: true, max_output_tokens: 16, temperature: 0 });
  let id = null, last = -1, types = [];
  for await (const e of stream) { types.push(e.type); id ??= e.response?.id; last = e.sequence_number; if (types.length === 3) break; }
  const resumed = client.responses.stream({ response_id: id, starting_after: last });
  const first = [];
  resumed.on('event', (e) => first.push(e.sequence_number));
  const final = await resumed.finalResponse();
  return [first[0] === last + 1 && ['completed', 'incomplete'].includes(final.status), `${types} resumed from ${first[0]} ${final.status}`];
});
await check('responses.retrieve stream starting_after', async () => {
  const r = await client.responses.create({ model, input: 'Tom', background: true, stream: true, max_output_tokens: 16, temperature: 0 });
  let id = null;
  for await (const e of r) { id ??= e.response?.id; }
  const replay = await client.responses.retrieve(id, { stream: true, starting_after: 1 });
  const seqs = [];
  for await (const e of replay) seqs.push(e.sequence_number);
  return [seqs[0] === 2 && seqs.length > 2, seqs.join(',')];
});
await check('files.create expires_after + waitForProcessing', async () => {
  const f = await client.files.create({ file: await toFile(Buffer.from(trainingLines), 'exp.jsonl'), purpose: 'fine-tune', expires_after: { anchor: 'created_at', seconds: 3600 } });
  const p = await client.files.waitForProcessing(f.id, { pollInterval: 100, maxWait: 10_000 });
  await client.files.delete(f.id);
  return [f.expires_at === f.created_at + 3600 && p.status === 'processed', JSON.stringify(f)];
});
await check('files.list order asc', async () => {
  const page = await client.files.list({ order: 'asc' });
  const created = page.data.map((f) => f.created_at);
  return [created.every((c, i) => i === 0 || created[i - 1] <= c), created.join(',')];
});
await expectError('files.create bad purpose -> 400 param purpose', async () => client.files.create({ file: await toFile(Buffer.from('x'), 'x.txt'), purpose: 'assistants' }), OpenAI.BadRequestError, { status: 400, param: 'purpose' });
await check('models.list shows the fine-tuned model', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  return [ids.includes(job.fine_tuned_model), ids.join(',')];
});
await check('fine_tuning.jobs pause + resume', async () => {
  const j = await client.fineTuning.jobs.create({ model, training_file: longFile.id, hyperparameters: { n_epochs: 10, batch_size: 1 } });
  await poll(() => client.fineTuning.jobs.retrieve(j.id), (x) => x.status === 'running', 30_000);
  const paused = await client.fineTuning.jobs.pause(j.id);
  const afterPause = await poll(() => client.fineTuning.jobs.retrieve(j.id), (x) => x.status === 'paused', 30_000);
  const resumed = await client.fineTuning.jobs.resume(j.id);
  const cancelled = await client.fineTuning.jobs.cancel(j.id);
  const end = await poll(() => client.fineTuning.jobs.retrieve(j.id), (x) => x.status === 'cancelled', 30_000);
  return [afterPause.status === 'paused' && ['queued', 'running', 'validating_files'].includes(resumed.status) && end.status === 'cancelled',
    `${paused.status} ${afterPause.status} ${resumed.status} ${cancelled.status} ${end.status}`];
});
await check('models.delete fine-tuned model', async () => {
  const d = saw('ModelDeleted', await client.models.delete(job.fine_tuned_model));
  let gone = false;
  try { await client.models.retrieve(job.fine_tuned_model); } catch (e) { gone = e instanceof OpenAI.NotFoundError; }
  return [d.id === job.fine_tuned_model && d.deleted === true && gone, JSON.stringify(d)];
});
await expectError('models.delete base -> PermissionDeniedError', () => client.models.delete(model), OpenAI.PermissionDeniedError, { status: 403 });
await check('batches over /v1/embeddings, /v1/completions and /v1/responses', async () => {
  const bodies = {
    '/v1/embeddings': { model, input: 'Lily' },
    '/v1/completions': { model, prompt: 'Lily', max_tokens: 3, temperature: 0 },
    '/v1/responses': { model, input: 'Lily', max_output_tokens: 16, temperature: 0 },
  };
  const out = [];
  for (const [url, body] of Object.entries(bodies)) {
    const file = await client.files.create({ file: await toFile(Buffer.from(JSON.stringify({ custom_id: 'x', method: 'POST', url, body }) + '\n'), 'b.jsonl'), purpose: 'batch' });
    const b = await client.batches.create({ input_file_id: file.id, endpoint: url, completion_window: '24h' });
    const done = await poll(() => client.batches.retrieve(b.id), (x) => ['completed', 'failed', 'cancelled', 'expired'].includes(x.status));
    out.push(`${url}:${done.status}:${done.request_counts?.completed}`);
  }
  return [out.every((o) => o.endsWith(':completed:1')), out.join(' ')];
});
await expectError('batches.create bad endpoint -> 400 param endpoint', () => client.batches.create({ input_file_id: trainingFile.id, endpoint: '/v1/moderations', completion_window: '24h' }), OpenAI.BadRequestError, { status: 400, param: 'endpoint' });
await expectError('batches.retrieve unknown -> NotFoundError', () => client.batches.retrieve('batch_nope'), OpenAI.NotFoundError, { status: 404 });
await check('errors carry the request id', async () => {
  try { await client.models.retrieve('no-such-model'); return [false, 'no error']; }
  catch (e) { return [typeof e.requestID === 'string' && e.requestID.length > 0 && e.error?.message, `requestID=${e.requestID} error=${JSON.stringify(e.error)}`]; }
});
await check('withResponse on a stream', async () => {
  const { data: stream, response } = await client.chat.completions.create({ ...greedy, messages: user('hi'), max_tokens: 2, stream: true }).withResponse();
  let n = 0;
  for await (const _ of stream) n++;
  return [response.headers.get('content-type')?.startsWith('text/event-stream') && n > 0, `${response.headers.get('content-type')} ${n}`];
});
await expectError('unsupported endpoint (moderations) -> clear error', () => client.moderations.create({ input: 'hi' }), OpenAI.NotFoundError, { status: 404 });
await check('responses.inputTokens.count', async () => {
  const r = await client.responses.create({ model, instructions: 'Be brief.', input: 'Tell me about Lily.', max_output_tokens: 16, temperature: 0 });
  const count = await client.responses.inputTokens.count({ model, instructions: 'Be brief.', input: 'Tell me about Lily.' });
  return [count.object === 'response.input_tokens' && count.input_tokens === r.usage.input_tokens, `${JSON.stringify(count)} vs usage ${r.usage.input_tokens}`];
});

await check('chat stream logprobs per chunk', async () => {
  const stream = await client.chat.completions.create({ ...greedy, messages: user('Lily'), max_tokens: 4, stream: true, logprobs: true, top_logprobs: 1, stream_options: { include_usage: true } });
  let tokens = 0, usage = null;
  for await (const chunk of stream) { for (const ch of chunk.choices) tokens += ch.logprobs?.content?.length ?? 0; if (chunk.usage) usage = chunk.usage; }
  return [tokens === usage?.completion_tokens, `${tokens} logprob tokens, usage ${JSON.stringify(usage)}`];
});
await expectError('top_logprobs without logprobs -> 400 param top_logprobs', () => client.chat.completions.create({ model, messages: user('hi'), max_tokens: 2, top_logprobs: 2 }), OpenAI.BadRequestError, { status: 400, param: 'top_logprobs' });
await check('chat tool_choice none', async () => {
  const c = await client.chat.completions.create({ ...greedy, messages: user('Weather?'), tools: [weather], tool_choice: 'none', max_tokens: 4 });
  return [!c.choices[0].message.tool_calls?.length && typeof c.choices[0].message.content === 'string', JSON.stringify(c.choices[0].message)];
});
await check('chat legacy functions + function_call', async () => {
  const c = await client.chat.completions.create({ ...greedy, messages: user('Weather?'), functions: [weather.function], function_call: { name: 'get_weather' }, max_tokens: 120 });
  const m = c.choices[0].message;
  return [m.function_call?.name === 'get_weather' && JSON.parse(m.function_call.arguments).city, `${c.choices[0].finish_reason} ${JSON.stringify(m)}`];
});
await expectError('chat custom tool -> 400 naming it', () => client.chat.completions.create({ model, messages: user('hi'), tools: [{ type: 'custom', custom: { name: 'x' } }] }), OpenAI.BadRequestError, { status: 400, param: 'tools[0].type' });
await expectError('chat stream, unknown model -> NotFoundError before the stream', () => client.chat.completions.create({ model: 'no-such-model', messages: user('hi'), stream: true }), OpenAI.NotFoundError, { status: 404, code: 'model_not_found' });
await check('chat response_format text + non-strict json_schema', async () => {
  const a = await client.chat.completions.create({ ...greedy, messages: user('hi'), max_tokens: 2, response_format: { type: 'text' } });
  const b = await client.chat.completions.create({ ...greedy, messages: user('Make a person.'), max_tokens: 120, response_format: { type: 'json_schema', json_schema: { name: 'p', schema: personSchema.json_schema.schema } } });
  return [a.choices.length === 1 && JSON.parse(b.choices[0].message.content).name, b.choices[0].message.content];
});
await check('chat.stream helper n=2', async () => {
  const stream = client.chat.completions.stream({ model, temperature: 1, seed: 1, n: 2, messages: user('Tom'), max_tokens: 3 });
  const final = await stream.finalChatCompletion();
  return [final.choices.length === 2 && final.choices.every((c) => typeof c.message.content === 'string'), JSON.stringify(final.choices)];
});
await check('organization and project headers are accepted', async () => {
  const other = new OpenAI({ baseURL, apiKey, organization: 'org-x', project: 'proj-x', maxRetries: 0 });
  const m = await other.models.retrieve(model);
  return [m.id === model, ''];
});
await check('responses.stream with a function tool (parsed_arguments)', async () => {
  const stream = client.responses.stream({ model, input: 'Weather in Paris?', temperature: 0, max_output_tokens: 120, tool_choice: 'required', tools: [{ type: 'function', name: 'get_weather', parameters: weather.function.parameters, strict: true }] });
  const events = [];
  stream.on('event', (e) => { events.push(e.type); if (e.type.startsWith('response.function_call_arguments')) saw(e.type === 'response.function_call_arguments.done' ? 'ResponseFunctionCallArgumentsDoneEvent' : 'ResponseFunctionCallArgumentsDeltaEvent', e); });
  const final = await stream.finalResponse();
  const call = final.output.find((o) => o.type === 'function_call');
  return [call?.parsed_arguments?.city && events.includes('response.function_call_arguments.done'), `${[...new Set(events)]} ${JSON.stringify(call)}`];
});
await check('responses input items pagination (asc/desc)', async () => {
  const r = await client.responses.create({ model, input: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }], max_output_tokens: 16, temperature: 0 });
  const desc = [], asc = [];
  for await (const i of client.responses.inputItems.list(r.id, { limit: 1 })) desc.push(i.content[0].text);
  for await (const i of client.responses.inputItems.list(r.id, { limit: 2, order: 'asc' })) asc.push(i.content[0].text);
  return [desc.join('') === 'cba' && asc.join('') === 'abc', `${desc} / ${asc}`];
});
await check('responses store false then retrieve -> 404', async () => {
  const r = await client.responses.create({ model, input: 'hi', max_output_tokens: 16, store: false });
  try { await client.responses.retrieve(r.id); return [false, 'retrieved']; } catch (e) { return [e instanceof OpenAI.NotFoundError, `${e.status}`]; }
});
await check('responses metadata echo + reasoning param', async () => {
  const r = await client.responses.create({ model, input: 'hi', max_output_tokens: 16, metadata: { k: 'v' }, user: 'u' });
  return [r.metadata?.k === 'v', JSON.stringify(r.metadata)];
});
await check('fine_tuning checkpoints pagination + checkpoint model', async () => {
  const jobs = [];
  for await (const j of client.fineTuning.jobs.list({ metadata: { run: 'node-sdk' } })) jobs.push(j);
  const cps = [];
  for await (const c of client.fineTuning.jobs.checkpoints.list(jobs[0].id, { limit: 1 })) cps.push(c);
  const steps = cps.map((c) => c.step_number);
  return [cps.length >= 2 && steps.every((s, i) => i === 0 || steps[i - 1] > s), steps.join(',')];
});
await check('fine_tuning.jobs.create validation_file + dpo', async () => {
  const pref = Array.from({ length: 2 }, (_, i) => JSON.stringify({ input: { messages: [{ role: 'user', content: `Story ${i}` }] }, preferred_output: [{ role: 'assistant', content: 'Lily was happy.' }], non_preferred_output: [{ role: 'assistant', content: 'Tom was sad.' }] })).join('\n') + '\n';
  const f = await client.files.create({ file: await toFile(Buffer.from(pref), 'pref.jsonl'), purpose: 'fine-tune' });
  const j = await client.fineTuning.jobs.create({ model, training_file: f.id, validation_file: f.id, method: { type: 'dpo', dpo: { hyperparameters: { n_epochs: 1, beta: 0.2 } } } });
  const done = await poll(() => client.fineTuning.jobs.retrieve(j.id), (x) => ['succeeded', 'failed', 'cancelled'].includes(x.status), 120_000);
  return [done.status === 'succeeded' && done.method?.type === 'dpo' && done.validation_file === f.id && done.result_files.length > 0, JSON.stringify(done).slice(0, 500)];
});
await check('fine-tuning result file content (CSV)', async () => {
  const text = await (await client.files.content(job.result_files[0])).text();
  return [text.startsWith('step,'), text.slice(0, 120)];
});

await check('embeddings base64 (SDK-decoded) equals float', async () => {
  const a = await client.embeddings.create({ model, input: 'Lily' });
  const b = await client.embeddings.create({ model, input: 'Lily', encoding_format: 'float' });
  const x = a.data[0].embedding, y = b.data[0].embedding;
  return [x.length === y.length && x.every((v, i) => Math.abs(v - y[i]) < 1e-6), `${x.slice(0, 3)} / ${y.slice(0, 3)}`];
});
await check('completions stop string + n=2 stream indices + best_of = n', async () => {
  const c = await client.completions.create({ ...greedy, prompt: 'Once upon a time', max_tokens: 12, stop: '.' });
  const stream = await client.completions.create({ model, prompt: ['a', 'b'], n: 2, best_of: 2, max_tokens: 2, seed: 1, stream: true });
  const indices = new Set();
  for await (const chunk of stream) for (const ch of chunk.choices) indices.add(ch.index);
  return [!c.choices[0].text.includes('.') && [...indices].sort().join() === '0,1,2,3', `${JSON.stringify(c.choices[0].text)} ${[...indices]}`];
});
await check('completions logprobs top_logprobs shape', async () => {
  const c = await client.completions.create({ ...greedy, prompt: 'Lily', max_tokens: 3, logprobs: 2 });
  const lp = c.choices[0].logprobs;
  return [lp.tokens.length === 3 && lp.top_logprobs.length === 3 && lp.top_logprobs.every((d) => typeof d === 'object' && Object.keys(d).length >= 1 && Object.keys(d).length <= 2), JSON.stringify(lp)];
});
await check('chat reasoning_effort + verbosity accepted', async () => {
  const c = await client.chat.completions.create({ ...greedy, messages: user('hi'), max_tokens: 2, reasoning_effort: 'low', verbosity: 'low' });
  return [c.choices.length === 1, ''];
});

await expectError('chat audio output -> 400 param modalities', () => client.chat.completions.create({ model, messages: user('hi'), max_tokens: 2, modalities: ['text', 'audio'], audio: { voice: 'alloy', format: 'mp3' } }), OpenAI.BadRequestError, { status: 400, param: 'modalities' });
await expectError('chat web_search_options -> 400 param web_search_options', () => client.chat.completions.create({ model, messages: user('hi'), max_tokens: 2, web_search_options: {} }), OpenAI.BadRequestError, { status: 400, param: 'web_search_options' });

await check('chat service_tier reported (whole and chunks)', async () => {
  const c = await client.chat.completions.create({ ...greedy, messages: user('hi'), max_tokens: 2, service_tier: 'auto' });
  const stream = await client.chat.completions.create({ ...greedy, messages: user('hi'), max_tokens: 2, stream: true });
  const tiers = new Set();
  for await (const chunk of stream) tiers.add(chunk.service_tier);
  return [c.service_tier === 'default' && [...tiers].join() === 'default', `${c.service_tier} ${[...tiers]}`];
});

await check('429 -> RateLimitError (fine-tuning queue full)', async () => {
  const ids = [];
  try {
    for (let i = 0; i < 40; i++) ids.push((await client.fineTuning.jobs.create({ model, training_file: longFile.id, hyperparameters: { n_epochs: 10, batch_size: 1 } })).id);
    return [false, `no 429 after ${ids.length} jobs`];
  } catch (e) {
    return [e instanceof OpenAI.RateLimitError && e.status === 429 && e.type === 'rate_limit_error', `after ${ids.length} jobs: ${e.constructor.name} ${e.status} ${e.code} ${e.message}`];
  } finally {
    for (const id of ids) await client.fineTuning.jobs.cancel(id).catch(() => {});
  }
});

// ---------------------------------------------------------------- shapes
for (const [type, fields] of Object.entries(required)) {
  const values = seen[type] ?? [];
  const missing = new Set();
  for (const v of values) for (const f of fields.split(' ')) if (!(f in v)) missing.add(f);
  report(`shape ${type}`, values.length > 0 && missing.size === 0, values.length === 0 ? 'no object of this type seen' : `missing: ${[...missing].join(',')}`);
}
