#!/usr/bin/env node
// prepare.js: Python source -> GPT-2 tokens -> llm.c shards (see README.md beside this file).
//
// Every file is validated, deduplicated by content, assigned to train or val by a hash of its
// content, tokenized on its own (worker threads), and then either cut into full T-token chunks
// (the paper's chunking, remainder dropped) or, with --eot, appended to llm.c's EOT-separated
// stream. Writes NAME_{train,val}_NNNNNN.bin, gpt2_tokenizer.bin, NAME_manifest.json and
// NAME_files.tsv into the output folder. Exit 0 ok, 1 bad input or usage, 2 internal error.
'use strict';
const fs = require('fs');
const path = require('path');
const { Worker } = require('worker_threads');
const gpt2 = require('./gpt2');
const { UserError, sha256, dirSource, debianSource, jsonlSource } = require('./sources');
const { SplitWriter, MAX_SHARD_TOKENS } = require('./shards');

const USAGE = `usage: node dev/data/prepare.js [options]
  --source S         debian (default) | dir:PATH | jsonl:PATH (.jsonl or .jsonl.gz) | sample
  --sample           same as --source sample (the small fixture corpus, for tests)
  --out DIR          output folder (default data)
  --name NAME        dataset name (default pycode; pysample for --sample)
  -T N               chunk length (default 128): each file is cut into full N-token chunks
  --eot              llm.c's stream instead: every file's tokens preceded by EOT, no chunking
  --val-frac F       fraction of files for validation, by content hash (default 0.01;
                     0.25 for --sample)
  --seed N           seed of the chunk shuffle inside each shard (default 1337)
  --no-shuffle       keep the chunks in file order
  --shard-tokens N   tokens per shard at most (default 100000000)
  --workers N        tokenizer threads (default 2; 0 = main thread)
  --packages FILE    Debian package list (default dev/data/packages.txt)
  --cache DIR        Debian download/unpack cache (default OUT/debian_cache)
  --max-bytes N      skip files larger than N bytes (default 1000000; 0 = no limit)
  --max-line N       skip files with a line longer than N characters (default 1000; 0 = no limit)
  --force            rebuild even if the outputs are up to date
  -q, --quiet        no progress bar`;

// Files whose contents decide the output; part of the up-to-date stamp.
const CODE_FILES = ['prepare.js', 'gpt2.js', 'sources.js', 'shards.js', 'tokenize_worker.js', 'fetch_debian.sh'];
const SKIP_REASONS = ['unreadable', 'empty', 'too_large', 'binary', 'non_utf8', 'long_line', 'bad_json', 'no_content'];
const WARN_LIMIT = 5; // warnings per skip reason; the rest (and empty files) are only counted

function parseArgs(argv) {
  const o = {
    source: 'debian', out: 'data', name: null, T: 128, eot: false, valFrac: null, seed: 1337,
    shuffle: true, shardTokens: 100000000, workers: 2, packages: path.join(__dirname, 'packages.txt'),
    cache: null, maxBytes: 1000000, maxLine: 1000, force: false, quiet: false,
  };
  const int = (flag, v, min) => {
    if (!/^\d+$/.test(v || '') || Number(v) < min) throw new UserError(`${flag} needs an integer >= ${min}, got '${v}'`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new UserError(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--source': o.source = val(); break;
      case '--sample': o.source = 'sample'; break;
      case '--out': o.out = val(); break;
      case '--name': o.name = val(); break;
      case '-T': case '--seq-len': o.T = int(a, val(), 1); break;
      case '--eot': o.eot = true; break;
      case '--val-frac': {
        const v = val();
        o.valFrac = Number(v);
        if (v.trim() === '' || !(o.valFrac >= 0 && o.valFrac < 1)) throw new UserError(`--val-frac needs a number in [0, 1), got '${v}'`);
        break;
      }
      case '--seed': o.seed = int(a, val(), 0); break;
      case '--no-shuffle': o.shuffle = false; break;
      case '--shard-tokens': o.shardTokens = int(a, val(), 1); break;
      case '--workers': o.workers = int(a, val(), 0); break;
      case '--packages': o.packages = val(); break;
      case '--cache': o.cache = val(); break;
      case '--max-bytes': o.maxBytes = int(a, val(), 0); break;
      case '--max-line': o.maxLine = int(a, val(), 0); break;
      case '--force': o.force = true; break;
      case '-q': case '--quiet': o.quiet = true; break;
      case '-h': case '--help': console.log(USAGE); process.exit(0); break;
      default: throw new UserError(`unknown option '${a}' (see --help)`);
    }
  }
  const sample = o.source === 'sample';
  if (o.name === null) o.name = sample ? 'pysample' : 'pycode';
  if (o.valFrac === null) o.valFrac = sample ? 0.25 : 0.01;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(o.name)) throw new UserError(`bad --name '${o.name}' (letters, digits, . _ -)`);
  if (o.cache === null) o.cache = path.join(o.out, 'debian_cache');
  if (o.shardTokens > MAX_SHARD_TOKENS) throw new UserError(`--shard-tokens must be <= ${MAX_SHARD_TOKENS}`);
  if (!o.eot) {
    if (o.shardTokens < o.T) throw new UserError(`--shard-tokens must be >= T (${o.T})`);
    o.shardTokens -= o.shardTokens % o.T; // whole chunks per shard
  }
  return o;
}

function openSource(o) {
  const s = o.source;
  if (s === 'debian') return debianSource(o.packages, o.cache);
  if (s === 'sample') return dirSource(path.join(__dirname, 'fixtures', 'sample'), 'sample');
  if (s.startsWith('dir:') && s.length > 4) return dirSource(s.slice(4), 'dir');
  if (s.startsWith('jsonl:') && s.length > 6) return jsonlSource(s.slice(6));
  throw new UserError(`bad --source '${s}' (debian, sample, dir:PATH or jsonl:PATH)`);
}

// The options that change the output bytes (recorded in the manifest and the stamp).
const outputOptions = (o) => ({
  T: o.eot ? null : o.T, mode: o.eot ? 'eot' : 'chunks', val_frac: o.valFrac, seed: o.seed,
  shuffle: o.eot ? false : o.shuffle, shard_tokens: o.shardTokens, max_bytes: o.maxBytes, max_line: o.maxLine,
});

function computeStamp(o, source) {
  const code = CODE_FILES.map((f) => sha256(fs.readFileSync(path.join(__dirname, f)))).join(',');
  return sha256(JSON.stringify({
    code, tiktoken: gpt2.TIKTOKEN_VERSION, name: o.name, source: o.source, options: outputOptions(o), inputs: source.stampKey,
  }));
}

// True when NAME_manifest.json carries this stamp and every file it lists is there, full size.
function upToDate(o, stamp) {
  let m;
  try { m = JSON.parse(fs.readFileSync(path.join(o.out, `${o.name}_manifest.json`), 'utf8')); } catch (e) { return false; }
  if (m.stamp !== stamp) return false;
  return m.outputs.every((f) => {
    try { return fs.statSync(path.join(o.out, f.file)).size === f.bytes; } catch (e) { return false; }
  });
}

// Tokenizes batches of texts on worker threads (or on this thread with 0 workers).
class TokenizerPool {
  constructor(n) {
    this.workers = [];
    this.waiting = new Map();
    this.nextId = 0;
    this.local = n === 0 ? new gpt2.CachedEncoder() : null;
    for (let i = 0; i < n; i++) {
      const w = new Worker(path.join(__dirname, 'tokenize_worker.js'));
      w.pending = 0;
      w.on('message', ({ id, tokens }) => {
        w.pending--;
        this.waiting.get(id).resolve(tokens);
        this.waiting.delete(id);
      });
      w.on('error', (e) => {
        for (const p of this.waiting.values()) p.reject(e);
        this.waiting.clear();
      });
      this.workers.push(w);
    }
  }

  run(texts) {
    if (this.local) return Promise.resolve(texts.map((t) => Uint16Array.from(this.local.encode(t))));
    const w = this.workers.reduce((a, b) => (b.pending < a.pending ? b : a));
    const id = this.nextId++;
    const p = new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    p.catch(() => {}); // rejections are seen when the batch is awaited, in order
    w.pending++;
    w.postMessage({ id, texts });
    return p;
  }

  close() { this.workers.forEach((w) => w.terminate()); }
}

// A progress bar on stderr: redrawn in place on a terminal, one line per 10% otherwise.
class Progress {
  constructor(total, quiet) {
    Object.assign(this, { total: Math.max(total, 1), quiet, done: 0, tokens: 0, files: 0, t0: Date.now(), last: 0, decile: 0 });
    this.tty = process.stderr.isTTY;
  }

  update(done, force = false) {
    this.done = done;
    if (this.quiet) return;
    const now = Date.now();
    const frac = Math.min(this.done / this.total, 1);
    if (this.tty ? !force && now - this.last < 200 : Math.floor(frac * 10) <= this.decile && !force) return;
    this.last = now;
    this.decile = Math.floor(frac * 10);
    const sec = (now - this.t0) / 1000;
    const eta = frac > 0.01 ? ` eta ${Math.round(sec / frac - sec)}s` : '';
    const bar = '#'.repeat(Math.round(frac * 30)).padEnd(30, '.');
    const line = `tokenize [${bar}] ${(100 * frac).toFixed(0).padStart(3)}%  ${(this.done / 1e6).toFixed(1)}/${(this.total / 1e6).toFixed(1)} MB  ${this.files} files  ${(this.tokens / 1e6).toFixed(1)}M tokens  ${sec.toFixed(0)}s${frac < 1 ? eta : ''}`;
    process.stderr.write(this.tty ? `\r${line}\x1b[K` : `${line}\n`);
  }

  end() {
    if (this.quiet) return;
    if (this.tty || this.decile < 10) this.update(this.done, true);
    if (this.tty) process.stderr.write('\n');
  }
}

async function build(o, source, stamp) {
  const t0 = Date.now();
  fs.mkdirSync(o.out, { recursive: true });
  const manifestPath = path.join(o.out, `${o.name}_manifest.json`);
  fs.rmSync(manifestPath, { force: true }); // an interrupted build must not look up to date

  const tFetch = Date.now();
  source.prepare();
  const fetchSec = (Date.now() - tFetch) / 1000;

  const T = o.eot ? 0 : o.T;
  const writers = {};
  for (const split of ['train', 'val']) {
    writers[split] = new SplitWriter({ outDir: o.out, name: o.name, split, shardTokens: o.shardTokens, chunkT: T, shuffle: o.shuffle, seed: o.seed });
  }
  const stats = {
    listed: 0, used: 0, train: 0, val: 0, duplicates: 0, short: 0,
    skipped: Object.fromEntries(SKIP_REASONS.map((r) => [r, 0])),
  };
  const tokens = { encoded: 0, train: 0, val: 0, dropped: 0 };
  const groups = new Map(); // per package (or source): file and token counts
  const group = (name) => {
    if (!groups.has(name)) groups.set(name, { files: 0, used: 0, train_files: 0, val_files: 0, tokens: 0 });
    return groups.get(name);
  };
  const seen = new Set(); // content hashes
  const rows = ['path\tsha256\tbytes\ttokens\tsplit'];
  const warned = {};
  const skip = (item, reason, detail) => {
    stats.skipped[reason]++;
    rows.push(`${item.rel}\t-\t-\t-\tskipped:${reason}`);
    warned[reason] = (warned[reason] || 0) + 1;
    if (warned[reason] <= WARN_LIMIT && reason !== 'empty') { // empty __init__.py files are common
      const clear = process.stderr.isTTY ? '\r\x1b[K' : ''; // over the progress bar
      process.stderr.write(`${clear}prepare: warning: skipped ${item.rel}: ${detail || reason.replace('_', ' ')}\n`);
    }
  };
  const utf8 = new TextDecoder('utf-8', { fatal: true }); // also drops a leading BOM

  // Validates one item; returns { rel, group, text, hash, bytes, split } or null (skipped/duplicate).
  const examine = (item) => {
    stats.listed++;
    group(item.group).files++;
    if (item.error) { skip(item, item.error, item.detail && `${item.error.replace('_', ' ')}: ${item.detail}`); return null; }
    let text = item.text;
    const raw = item.bytes || Buffer.from(text, 'utf8');
    if (raw.length === 0) { skip(item, 'empty'); return null; }
    if (o.maxBytes > 0 && raw.length > o.maxBytes) { skip(item, 'too_large', `larger than ${o.maxBytes} bytes`); return null; }
    if (raw.includes(0)) { skip(item, 'binary', 'binary (NUL byte)'); return null; }
    if (text === undefined) {
      try { text = utf8.decode(raw); } catch (e) { skip(item, 'non_utf8', 'not valid UTF-8'); return null; }
    } else if (/[\uD800-\uDFFF]/u.test(text)) { // in u-mode only unpaired surrogates match
      skip(item, 'non_utf8', 'lone surrogate in "content"'); return null;
    }
    if (o.maxLine > 0 && text.split('\n').some((l) => l.length > o.maxLine)) {
      skip(item, 'long_line', `a line longer than ${o.maxLine} characters`); return null;
    }
    const hash = sha256(raw);
    if (seen.has(hash)) { stats.duplicates++; rows.push(`${item.rel}\t${hash.slice(0, 16)}\t${raw.length}\t-\tduplicate`); return null; }
    seen.add(hash);
    // Split by content: val iff the first 52 bits of sha256, as a fraction of 2^52, are < val_frac.
    const split = parseInt(hash.slice(0, 13), 16) / 2 ** 52 < o.valFrac ? 'val' : 'train';
    rows.push(null); // this file's row, filled in when its tokens come back
    return { rel: item.rel, group: item.group, text, hash, bytes: raw.length, split, row: rows.length - 1 };
  };

  const eotArr = Uint16Array.of(gpt2.EOT);
  const accept = (doc, toks) => {
    const g = group(doc.group);
    let kept = toks.length;
    if (T > 0) {
      kept = toks.length - (toks.length % T);
      if (kept === 0) stats.short++;
      writers[doc.split].append(toks.subarray(0, kept));
      tokens.dropped += toks.length - kept;
    } else {
      writers[doc.split].append(eotArr);
      writers[doc.split].append(toks);
      kept += 1;
    }
    tokens.encoded += toks.length;
    tokens[doc.split] += kept;
    stats.used++;
    stats[doc.split]++;
    g.used++;
    g[`${doc.split}_files`]++;
    g.tokens += kept;
    rows[doc.row] = `${doc.rel}\t${doc.hash.slice(0, 16)}\t${doc.bytes}\t${toks.length}\t${doc.split}`;
  };

  // The pipeline: examine items in order, tokenize batches in parallel, write results in order.
  const tTok = Date.now();
  const progress = new Progress(source.totalBytes, o.quiet);
  let doneBytes = 0;
  const pool = new TokenizerPool(o.workers);
  const inFlight = [];
  const maxInFlight = 2 * Math.max(o.workers, 1);
  const consume = async () => {
    const { docs, result } = inFlight.shift();
    const toks = await result;
    docs.forEach((d, i) => {
      accept(d, toks[i]);
      doneBytes += d.bytes;
    });
    progress.files = stats.used;
    progress.tokens = tokens.train + tokens.val;
    progress.update(source.bytesRead ? source.bytesRead() : doneBytes);
  };
  let batch = [];
  let batchBytes = 0;
  const send = () => {
    inFlight.push({ docs: batch, result: pool.run(batch.map((d) => d.text)) });
    batch.forEach((d) => { d.text = null; });
    batch = [];
    batchBytes = 0;
  };
  try {
    for await (const item of source.items()) {
      const doc = examine(item);
      if (doc === null) { doneBytes += item.bytes ? item.bytes.length : 0; continue; }
      batch.push(doc);
      batchBytes += doc.bytes;
      if (batchBytes >= 1 << 19 || batch.length >= 256) send();
      while (inFlight.length >= maxInFlight) await consume();
    }
    if (batch.length > 0) send();
    while (inFlight.length > 0) await consume();
  } finally {
    pool.close();
  }
  progress.end();
  const tokenizeSec = (Date.now() - tTok) / 1000;

  if (stats.used === 0) throw new UserError(`no usable files in ${source.describe} (${stats.listed} seen, all skipped or duplicates)`);
  for (const w of Object.values(writers)) w.flush();
  if (tokens.val === 0) console.error(`prepare: warning: the val split is empty (raise --val-frac)`);
  if (tokens.train === 0) console.error(`prepare: warning: the train split is empty (files shorter than T=${T}?)`);
  const shards = [...writers.train.shards, ...writers.val.shards];

  // Remove shards of this name left over from an earlier, larger build.
  const keep = new Set(shards.map((s) => s.file));
  const stale = new RegExp(`^${o.name.replace(/[.]/g, '\\.')}_(train|val)_\\d{6}\\.bin$`);
  for (const f of fs.readdirSync(o.out)) if (stale.test(f) && !keep.has(f)) fs.rmSync(path.join(o.out, f));

  // llm.c's decode table (rewritten only if it differs), the per-file table, the manifest.
  const tokPath = path.join(o.out, 'gpt2_tokenizer.bin');
  const tokBin = gpt2.tokenizerBin();
  if (!fs.existsSync(tokPath) || !fs.readFileSync(tokPath).equals(tokBin)) fs.writeFileSync(tokPath, tokBin);
  const filesTsv = `${o.name}_files.tsv`;
  const tsv = `${rows.join('\n')}\n`;
  fs.writeFileSync(path.join(o.out, filesTsv), tsv);
  const extra = [{ file: filesTsv, bytes: Buffer.byteLength(tsv), sha256: sha256(tsv) }];
  if (source.groups) { // Debian: the package list pinned to the versions used (for --packages)
    const lockFile = `${o.name}_packages.lock`;
    const lock = `# ${o.name}: Debian packages and versions used; rebuild with --packages ${lockFile}\n${
      source.groups.map((g) => `${g.name}=${g.version}\n`).join('')}`;
    fs.writeFileSync(path.join(o.out, lockFile), lock);
    extra.push({ file: lockFile, bytes: Buffer.byteLength(lock), sha256: sha256(lock) });
  }

  const totalSec = (Date.now() - t0) / 1000;
  const manifest = {
    format: 'normfree-gpt2 data manifest 1',
    name: o.name,
    source: o.source,
    source_root: source.root ? path.resolve(source.root) : null, // where the files table's paths are
    options: outputOptions(o),
    split_rule: 'identical files (sha256 of the bytes) are kept once; a file is val iff the first 13 hex digits of its sha256, / 16^13, are < val_frac',
    chunking: T === 0 ? 'llm.c stream: each file as EOT (50256) followed by its tokens, files in order'
      : `each file tokenized alone and cut into full ${T}-token chunks, remainder dropped; ${
        o.shuffle ? `chunks shuffled within each shard (seed ${o.seed})` : 'chunks in file order'}`,
    file_order: source.kind === 'jsonl' ? 'line order' : 'sha256 of the relative path',
    tokenizer: { package: 'js-tiktoken', version: gpt2.TIKTOKEN_VERSION, encoding: 'gpt2', eot: gpt2.EOT, vocab_size: gpt2.VOCAB_SIZE },
    files: stats,
    tokens,
    packages: source.groups ? source.groups.map((g) => ({ ...g, ...group(g.name) })) : undefined,
    groups: source.groups ? undefined : Object.fromEntries(groups),
    outputs: [
      ...shards,
      { file: 'gpt2_tokenizer.bin', bytes: tokBin.length, sha256: sha256(tokBin) },
      ...extra,
    ],
    seconds: { fetch: fetchSec, tokenize: tokenizeSec, total: totalSec },
    node: process.version,
    stamp,
  };
  const tmp = `${manifestPath}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(manifest, null, 1)}\n`);
  fs.renameSync(tmp, manifestPath);

  // Closing summary.
  const n = (x) => x.toLocaleString('en-US');
  const skippedTotal = Object.values(stats.skipped).reduce((a, b) => a + b, 0);
  const skippedList = Object.entries(stats.skipped).filter(([, c]) => c > 0).map(([r, c]) => `${c} ${r}`).join(', ');
  const shardCount = (split) => shards.filter((s) => s.split === split).length;
  console.log(`prepare: ${o.name} from ${source.describe}`);
  console.log(`prepare: files: ${n(stats.used)} used (${n(stats.train)} train, ${n(stats.val)} val), ${n(stats.duplicates)} duplicates, ${n(skippedTotal)} skipped${skippedTotal ? ` (${skippedList})` : ''}${T > 0 ? `, ${n(stats.short)} shorter than T` : ''}`);
  console.log(`prepare: tokens: train ${n(tokens.train)} in ${shardCount('train')} shard(s), val ${n(tokens.val)} in ${shardCount('val')} shard(s)${T > 0 ? `, T=${T} chunks (${n(tokens.dropped)} remainder tokens dropped)` : ', EOT stream'}`);
  console.log(`prepare: wrote ${path.join(o.out, `${o.name}_{train,val}_*.bin`)}, ${tokPath}, ${manifestPath}, ${
    extra.map((f) => path.join(o.out, f.file)).join(', ')}`);
  console.log(`prepare: ${totalSec.toFixed(1)} s (fetch ${fetchSec.toFixed(1)} s, tokenize ${tokenizeSec.toFixed(1)} s)`);
}

async function main() {
  const pinned = JSON.parse(fs.readFileSync(path.join(__dirname, 'package.json'), 'utf8')).dependencies['js-tiktoken'];
  if (gpt2.TIKTOKEN_VERSION !== pinned) {
    throw new UserError(`js-tiktoken ${gpt2.TIKTOKEN_VERSION} is installed, ${pinned} is pinned: run 'npm ci' in ${__dirname}`);
  }
  const o = parseArgs(process.argv.slice(2));
  const source = openSource(o);
  const stamp = computeStamp(o, source);
  if (!o.force && upToDate(o, stamp)) {
    console.log(`prepare: ${o.name} in ${o.out} is up to date (nothing to do; --force rebuilds)`);
    return;
  }
  await build(o, source, stamp);
}

main().catch((e) => {
  if (e instanceof UserError) {
    console.error(`prepare: error: ${e.message}`);
    process.exit(1);
  }
  console.error(`prepare: internal error: ${e && e.stack ? e.stack : e}`);
  process.exit(2);
});
