// Runs GGUF files through llama.cpp (node-llama-cpp's prebuilt CPU library) for SharpTune's interop tests.
// Usage: node llama-run.mjs jobs.json > results.json
// jobs.json: {"jobs": [{"model": "a.gguf", "lora": "b.gguf"|null, "kind": "greedy", "prompt": [ids], "tokens": 48}
//                      | {"model": ..., "kind": "perplexity", "ids": [ids]}
//                      | {"model": ..., "kind": "distribution", "prompt": [ids]}
//                      | {"model": ..., "kind": "tokenize", "texts": [strings]}]}
// Greedy decoding takes the most probable next token from llama.cpp's full distribution and never stops at EOS, so
// the ids compare position by position. Perplexity is exp(mean negative log-likelihood of ids[1..] given the prefix).
// Distribution is llama.cpp's next-token distribution after the prompt, as [[token, probability], ...] for every
// token. Tokenize loads only the vocabulary and returns llama.cpp's ids for each text (special tokens written in the text
// parsed, no BOS/EOS added) with the BOS/EOS ids and whether llama.cpp adds them. A job with "float32": true computes attention in float32 (llama.cpp's defaults use an f16 cache and flash
// attention).
import { readFileSync } from "node:fs";
import { getLlama } from "node-llama-cpp";

const { jobs } = JSON.parse(readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, logLevel: "error", maxThreads: 1 });
const sampling = { temperature: 1, topK: 0, topP: 1, minP: 0 };
const results = [];
const models = new Map();

async function loadModel(path) {
    if (!models.has(path)) models.set(path, await llama.loadModel({ modelPath: path, gpuLayers: 0 }));
    return models.get(path);
}

function argmax(probabilities) {
    let best = -1, bestP = -1;
    for (const [token, p] of probabilities) if (p > bestP) { best = token; bestP = p; }
    return best;
}

for (const job of jobs) {
    if (job.kind === "tokenize") {
        const vocab = await llama.loadModel({ modelPath: job.model, gpuLayers: 0, vocabOnly: true });
        const t = vocab.tokens;
        results.push({
            tokens: job.texts.map(text => Array.from(vocab.tokenize(text, true))),
            bos: t.bos, eos: t.eos, addBos: t.shouldPrependBosToken, addEos: t.shouldAppendEosToken,
        });
        await vocab.dispose();
        continue;
    }
    const model = await loadModel(job.model);
    const length = job.kind === "greedy" ? job.prompt.length + job.tokens : job.kind === "distribution" ? job.prompt.length : job.ids.length;
    const context = await model.createContext({
        contextSize: Math.max(64, length + 8), batchSize: Math.max(64, length + 8), threads: 1, sequences: 1,
        lora: job.lora ? { adapters: [{ filePath: job.lora, scale: 1 }] } : undefined,
        // "float32": keys and values in float32 and no flash attention (whose CPU kernel rounds through f16), so logits
        // compare with a float32 reference to about 1e-6.
        ...(job.float32 ? { experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32", flashAttention: false } : {}),
    });
    const sequence = context.getSequence();
    const next = { generateNext: { probabilities: true, options: sampling } };
    if (job.kind === "greedy") {
        const out = [];
        let input = job.prompt.map((t, i) => i === job.prompt.length - 1 ? [t, next] : t);
        while (out.length < job.tokens) {
            const evaluated = await sequence.controlledEvaluate(input);
            const token = argmax(evaluated[evaluated.length - 1].next.probabilities);
            out.push(token);
            input = [[token, next]];
        }
        results.push({ greedy: out });
    } else if (job.kind === "perplexity") {
        const input = job.ids.map((t, i) => i < job.ids.length - 1 ? [t, next] : t);
        const evaluated = await sequence.controlledEvaluate(input);
        let nll = 0, mass = 0;
        for (let i = 0; i < job.ids.length - 1; i++) {
            const probabilities = evaluated[i].next.probabilities;
            nll -= Math.log(probabilities.get(job.ids[i + 1]) ?? 0);
            if (i === 0) for (const p of probabilities.values()) mass += p;
        }
        results.push({ perplexity: Math.exp(nll / (job.ids.length - 1)), nll, count: job.ids.length - 1, firstMass: mass });
    } else if (job.kind === "distribution") {
        const input = job.prompt.map((t, i) => i === job.prompt.length - 1 ? [t, next] : t);
        const evaluated = await sequence.controlledEvaluate(input);
        results.push({ distribution: [...evaluated[evaluated.length - 1].next.probabilities.entries()] });
    } else {
        throw new Error(`unknown job kind ${job.kind}`);
    }
    await context.dispose();
}
process.stdout.write(JSON.stringify({ results }));
await llama.dispose();
