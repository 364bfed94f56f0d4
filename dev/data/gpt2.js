// gpt2.js: GPT-2 BPE through js-tiktoken, and llm.c's gpt2_tokenizer.bin decode table.
//
// encodeOrdinary(text) is js-tiktoken's own encode with no special tokens (tiktoken's
// encode_ordinary): "<|endoftext|>" inside a file is plain text, never token 50256.
// CachedEncoder gives the same ids faster: it splits the text with the same regex and
// memoizes the ids of each piece (source code repeats its words and indentation a lot).
'use strict';
const { Tiktoken } = require('js-tiktoken/lite');
const ranks = require('js-tiktoken/ranks/gpt2');

const EOT = 50256;        // <|endoftext|>
const VOCAB_SIZE = 50257; // 50256 BPE ranks + EOT
// The installed js-tiktoken version (its package.json is not exported, so read it by path).
const TIKTOKEN_VERSION = JSON.parse(require('fs').readFileSync(
  require('path').join(require.resolve('js-tiktoken/lite'), '..', '..', 'package.json'), 'utf8')).version;

let encoder = null;
function getEncoder() {
  if (encoder === null) encoder = new Tiktoken(ranks);
  return encoder;
}

// js-tiktoken's encode with special tokens neither allowed nor rejected: all text is ordinary.
function encodeOrdinary(text) {
  return getEncoder().encode(text, [], []);
}

// Same result as encodeOrdinary, by construction: js-tiktoken encodes each regex piece on its
// own (byte-pair merges never cross pieces), so ids(text) = concat over pieces of ids(piece).
// ids(piece) is computed by js-tiktoken itself, after checking that the piece, split alone,
// is still one piece (so encode(piece) runs BPE on exactly these bytes).
class CachedEncoder {
  constructor(maxEntries = 1 << 20) {
    this.maxEntries = maxEntries;
    this.cache = new Map();
    this.pattern = new RegExp(ranks.pat_str, 'gu');
  }

  encode(text) {
    const out = [];
    for (const match of text.matchAll(this.pattern)) {
      const piece = match[0];
      let ids = this.cache.get(piece);
      if (ids === undefined) {
        ids = this.encodePiece(piece);
        if (this.cache.size >= this.maxEntries) this.cache.clear(); // bound the memory
        this.cache.set(piece, ids);
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    }
    return out;
  }

  encodePiece(piece) {
    const alone = piece.match(this.pattern);
    if (alone === null || alone.length !== 1 || alone[0] !== piece) {
      throw new Error(`internal: regex piece ${JSON.stringify(piece)} re-splits`);
    }
    return getEncoder().encode(piece, [], []);
  }
}

// The bytes of every token id, parsed from js-tiktoken's rank table. Its lines are
// "<prefix> <first rank> <base64 token> <base64 token> ...", ranks counting up from the first.
function tokenBytesTable() {
  const table = new Array(VOCAB_SIZE).fill(null);
  for (const line of ranks.bpe_ranks.split('\n')) {
    if (line === '') continue;
    const [, offsetStr, ...tokens] = line.split(' ');
    const offset = Number.parseInt(offsetStr, 10);
    tokens.forEach((b64, i) => { table[offset + i] = Buffer.from(b64, 'base64'); });
  }
  table[EOT] = Buffer.from('<|endoftext|>', 'utf8');
  table.forEach((bytes, id) => {
    if (bytes === null || bytes.length < 1 || bytes.length > 255) {
      throw new Error(`internal: token ${id} has no bytes or more than 255`);
    }
  });
  return table;
}

// llm.c's gpt2_tokenizer.bin (doc/reference.md, "File formats"): 256 int32 header
// [20240328, 2, vocab size, EOT id], then per token one length byte and its raw bytes.
function tokenizerBin() {
  const header = Buffer.alloc(256 * 4);
  header.writeInt32LE(20240328, 0);
  header.writeInt32LE(2, 4);
  header.writeInt32LE(VOCAB_SIZE, 8);
  header.writeInt32LE(EOT, 12);
  const parts = [header];
  for (const bytes of tokenBytesTable()) parts.push(Buffer.from([bytes.length]), bytes);
  return Buffer.concat(parts);
}

module.exports = {
  EOT, VOCAB_SIZE, TIKTOKEN_VERSION, encodeOrdinary, CachedEncoder, tokenBytesTable, tokenizerBin,
};
