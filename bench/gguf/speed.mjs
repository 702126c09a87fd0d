// Times GGUF files in llama.cpp (node-llama-cpp's prebuilt CPU library): prompt processing and generation, 1 thread.
// Usage: node speed.mjs FILE.gguf [...]   (run from the repository root after bench/gguf/run.sh installed the package)
import { statSync } from "node:fs";
import { getLlama } from "node-llama-cpp";

const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, logLevel: "error", maxThreads: 1 });
console.log("| file | size MB | prompt tok/s (128) | generation tok/s (64) |\n|---|---|---|---|");
for (const path of process.argv.slice(2)) {
    const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
    const context = await model.createContext({ contextSize: 256, batchSize: 128, threads: 1 });
    const sequence = context.getSequence();
    const prompt = Array.from({ length: 128 }, (_, i) => 10 + (i * 7) % Math.min(200, model.tokens.length ?? 200));
    let start = performance.now();
    await sequence.evaluateWithoutGeneratingNewTokens(prompt);
    const promptRate = 128 / ((performance.now() - start) / 1000);
    start = performance.now();
    let generated = 0;
    for await (const _ of sequence.evaluate([prompt[0]], { temperature: 0, yieldEogToken: true })) if (++generated >= 64) break;
    const generationRate = generated / ((performance.now() - start) / 1000);
    console.log(`| ${path.split("/").pop()} | ${(statSync(path).size / 1e6).toFixed(2)} | ${promptRate.toFixed(0)} | ${generationRate.toFixed(0)} |`);
    await context.dispose();
    await model.dispose();
}
await llama.dispose();
