#!/usr/bin/env node
// verify.js [--out DIR] [--name NAME]: checks a built corpus against js-tiktoken directly.
// Re-reads every used file listed in NAME_files.tsv (under the manifest's source_root),
// encodes it with js-tiktoken's own encode (not the cached fast path), and checks that
//   chunk mode: the chunks in the split's shards are exactly the files' full T-token chunks;
//   EOT mode:   the split's stream is exactly EOT + tokens for each file, in table order;
// and that shard headers and sizes are right and no content hash is in both splits.
// Single-threaded and slow (~2 MB of source per second). Exit 0 ok, 1 mismatch or bad input.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const gpt2 = require('./gpt2');
const { readShard } = require('./shards');

function main() {
  const args = process.argv.slice(2);
  const opt = (flag, dflt) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : dflt);
  const out = opt('--out', 'data');
  const name = opt('--name', 'pycode');
  const m = JSON.parse(fs.readFileSync(path.join(out, `${name}_manifest.json`), 'utf8'));
  if (!m.source_root) throw new Error(`${m.source} sources cannot be re-read (no source_root)`);
  const T = m.options.T; // null in EOT mode
  const rows = fs.readFileSync(path.join(out, `${name}_files.tsv`), 'utf8').trim().split('\n').slice(1)
    .map((l) => l.split('\t')).map(([rel, sha, bytes, tokens, split]) => ({ rel, sha, tokens: Number(tokens), split }));
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const key = (tokens) => crypto.createHash('sha1').update(Buffer.from(tokens.buffer, tokens.byteOffset, tokens.byteLength)).digest('base64');
  let problems = 0;
  const fail = (msg) => { problems++; if (problems <= 20) console.error(`verify: ${msg}`); };

  const hashes = { train: new Set(), val: new Set() };
  for (const split of ['train', 'val']) {
    const files = m.outputs.filter((f) => f.split === split).map((f) => f.file);
    const stream = files.map((f) => readShard(path.join(out, f))); // checks header and size
    const used = rows.filter((r) => r.split === split);
    used.forEach((r) => hashes[split].add(r.sha));
    let checked = 0;
    if (T) { // multiset of chunks: +1 for each chunk in the shards, -1 for each expected one
      const count = new Map();
      for (const s of stream) {
        if (s.length % T !== 0) fail(`${split}: a shard of ${s.length} tokens is not whole ${T}-token chunks`);
        for (let k = 0; k + T <= s.length; k += T) { const c = key(s.subarray(k, k + T)); count.set(c, (count.get(c) || 0) + 1); }
      }
      for (const r of used) {
        const ids = Uint16Array.from(gpt2.encodeOrdinary(utf8.decode(fs.readFileSync(path.join(m.source_root, r.rel)))));
        if (ids.length !== r.tokens) fail(`${r.rel}: ${ids.length} tokens, the table says ${r.tokens}`);
        for (let k = 0; k + T <= ids.length; k += T) {
          const c = key(ids.subarray(k, k + T));
          const n = count.get(c) || 0;
          if (n === 0) fail(`${r.rel}: chunk ${k / T} is not in the ${split} shards`);
          else if (n === 1) count.delete(c); else count.set(c, n - 1);
        }
        checked += ids.length - (ids.length % T);
      }
      if (count.size > 0) fail(`${split}: ${count.size} chunk(s) in the shards come from no file`);
    } else { // EOT stream, file after file
      const all = Buffer.concat(stream.map((s) => Buffer.from(s.buffer, s.byteOffset, s.byteLength)));
      let pos = 0;
      for (const r of used) {
        const ids = Uint16Array.from([gpt2.EOT, ...gpt2.encodeOrdinary(utf8.decode(fs.readFileSync(path.join(m.source_root, r.rel))))]);
        const bytes = Buffer.from(ids.buffer);
        if (!all.subarray(pos, pos + bytes.length).equals(bytes)) fail(`${r.rel}: its tokens are not at token ${pos / 2} of the ${split} stream`);
        pos += bytes.length;
        checked += ids.length;
      }
      if (pos !== all.length) fail(`${split}: ${(all.length - pos) / 2} tokens after the last file`);
    }
    if (checked !== m.tokens[split]) fail(`${split}: ${checked} tokens expected, the manifest says ${m.tokens[split]}`);
    console.log(`verify: ${split}: ${used.length} files, ${checked} tokens checked`);
  }
  for (const h of hashes.val) if (hashes.train.has(h)) fail(`content ${h} is in both splits`);
  console.log(problems === 0 ? 'verify: ok' : `verify: ${problems} problem(s)`);
  process.exit(problems === 0 ? 0 : 1);
}

try { main(); } catch (e) { console.error(`verify: error: ${e.message}`); process.exit(1); }
