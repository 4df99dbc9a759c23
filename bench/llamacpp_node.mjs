// llama.cpp through node-llama-cpp's prebuilt CPU binary: the stand-in side of
// bench/bench_llamacpp.py where llama-cpp-python is not built yet. Same protocol as the Python
// sides: a first line {"prompt_ids": [...]} on stdin, {"ready": ...} on stdout, then one JSON
// line {"tok_s", "tokens"} per "run" line. Arguments: the node-llama-cpp install directory, the
// GGUF file, the tokens to write, the threads.
import {createInterface} from "node:readline";
import {pathToFileURL} from "node:url";
import {join} from "node:path";

const [installDir, gguf, tokensArg, threadsArg] = process.argv.slice(2);
const nTokens = Number(tokensArg);
const threads = Number(threadsArg);
const lib = await import(pathToFileURL(join(installDir, "node_modules/node-llama-cpp/dist/index.js")));
const llama = await lib.getLlama({gpu: false, build: "never", maxThreads: threads});
const model = await llama.loadModel({modelPath: gguf});
const context = await model.createContext({contextSize: 512, threads});
const sequence = context.getSequence();
const lines = createInterface({input: process.stdin});
const input = lines[Symbol.asyncIterator]();
const ids = JSON.parse((await input.next()).value).prompt_ids;

async function once() {
  await sequence.clearHistory();
  const tokens = [];
  let first = 0, last = 0;
  for await (const token of sequence.evaluate(ids, {temperature: 0})) {
    last = performance.now();
    first = first || last;
    tokens.push(Number(token));
    if (tokens.length === nTokens) break;
  }
  return {tok_s: (tokens.length - 1) / ((last - first) / 1000), tokens};
}

await once(); // warm-up
const version = JSON.parse(
  (await import("node:fs")).readFileSync(join(installDir, "node_modules/node-llama-cpp/package.json"))
).version;
console.log(JSON.stringify({ready: {version: `node-llama-cpp ${version} (prebuilt)`, threads: context.currentThreads}}));
for (;;) {
  const next = await input.next();
  if (next.done || next.value.trim() !== "run") break;
  console.log(JSON.stringify(await once()));
}
await context.dispose();
await model.dispose();
process.exit(0);
