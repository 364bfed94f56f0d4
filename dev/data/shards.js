// shards.js: llm.c token shards (doc/reference.md, "File formats"): 256 int32 header
// [20240520, 1, N], then N uint16 tokens; file size exactly 1024 + 2N.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const SHARD_MAGIC = 20240520;
const SHARD_VERSION = 1;
const HEADER_BYTES = 256 * 4;
const MAX_SHARD_TOKENS = 0x7fffffff; // N must fit the int32 header slot
// Typed arrays use the host's byte order; the shards are little-endian.
if (require('os').endianness() !== 'LE') throw new Error('big-endian hosts are not supported');

const shardName = (name, split, index) => `${name}_${split}_${String(index).padStart(6, '0')}.bin`;

// Writes tokens[0..n) as one shard, through NAME.tmp and a rename; returns its sha256.
function writeShard(file, tokens, n) {
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeInt32LE(SHARD_MAGIC, 0);
  header.writeInt32LE(SHARD_VERSION, 4);
  header.writeInt32LE(n, 8);
  const body = Buffer.from(tokens.buffer, tokens.byteOffset, n * 2);
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  fs.writeSync(fd, header);
  fs.writeSync(fd, body);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  return crypto.createHash('sha256').update(header).update(body).digest('hex');
}

// Reads a shard back and checks its header and size; returns a Uint16Array of its tokens.
function readShard(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < HEADER_BYTES) throw new Error(`${file}: shorter than the 1024-byte header`);
  const magic = buf.readInt32LE(0);
  const version = buf.readInt32LE(4);
  const n = buf.readInt32LE(8);
  if (magic !== SHARD_MAGIC) throw new Error(`${file}: bad magic ${magic}`);
  if (version !== SHARD_VERSION) throw new Error(`${file}: bad version ${version}`);
  if (buf.length !== HEADER_BYTES + 2 * n) throw new Error(`${file}: size ${buf.length} != 1024 + 2*${n}`);
  return new Uint16Array(buf.buffer.slice(buf.byteOffset + HEADER_BYTES, buf.byteOffset + buf.length));
}

// mulberry32: a small seeded PRNG, so chunk shuffles are identical on every machine.
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Collects one split's token stream and cuts it into shards of at most shardTokens tokens.
// In chunk mode every append is a whole number of T-token chunks and shardTokens is a
// multiple of T, so no chunk crosses a shard; with shuffle the chunks inside each shard are
// permuted (Fisher-Yates, seeded by seed, split and shard index) before writing.
class SplitWriter {
  constructor({ outDir, name, split, shardTokens, chunkT, shuffle, seed }) {
    Object.assign(this, { outDir, name, split, shardTokens, chunkT, shuffle, seed });
    this.buf = new Uint16Array(Math.min(shardTokens, 1 << 20));
    this.n = 0;
    this.shards = []; // { file, split, tokens, bytes, sha256 }
  }

  append(tokens) {
    let off = 0;
    while (off < tokens.length) {
      if (this.n === this.shardTokens) this.flush();
      if (this.n === this.buf.length) { // grow the buffer, up to one shard
        const bigger = new Uint16Array(Math.min(this.shardTokens, this.buf.length * 2));
        bigger.set(this.buf.subarray(0, this.n));
        this.buf = bigger;
      }
      const take = Math.min(tokens.length - off, this.buf.length - this.n);
      this.buf.set(tokens.subarray(off, off + take), this.n);
      this.n += take;
      off += take;
    }
  }

  // Writes the buffered tokens as the next shard (an empty split still gets one empty shard).
  flush() {
    if (this.n === 0 && this.shards.length > 0) return;
    let data = this.buf;
    if (this.shuffle && this.chunkT > 0) data = this.shuffledChunks();
    const file = shardName(this.name, this.split, this.shards.length);
    const sha = writeShard(path.join(this.outDir, file), data, this.n);
    this.shards.push({ file, split: this.split, tokens: this.n, bytes: HEADER_BYTES + 2 * this.n, sha256: sha });
    this.n = 0;
  }

  shuffledChunks() {
    const T = this.chunkT;
    const count = this.n / T;
    const splitSalt = this.split === 'train' ? 1 : 2;
    const rand = mulberry32(Math.imul(this.seed, 1000003) ^ Math.imul(splitSalt, 7919) ^ this.shards.length);
    const order = Array.from({ length: count }, (_, i) => i);
    for (let i = count - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const out = new Uint16Array(this.n);
    order.forEach((src, dst) => out.set(this.buf.subarray(src * T, src * T + T), dst * T));
    return out;
  }
}

module.exports = { SHARD_MAGIC, HEADER_BYTES, MAX_SHARD_TOKENS, shardName, writeShard, readShard, SplitWriter };
