// tokenize_worker.js: a worker thread that turns batches of texts into GPT-2 token ids.
// Message in: { id, texts: [string] }. Message out: { id, tokens: [Uint16Array] }
// (all ids are < 50257, so they fit uint16; the buffers are transferred, not copied).
'use strict';
const { parentPort } = require('worker_threads');
const { CachedEncoder } = require('./gpt2');

const encoder = new CachedEncoder();

parentPort.on('message', ({ id, texts }) => {
  const tokens = texts.map((text) => Uint16Array.from(encoder.encode(text)));
  parentPort.postMessage({ id, tokens }, tokens.map((t) => t.buffer));
});
