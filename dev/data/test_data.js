// test_data.js: tests of the data pipeline on the sample fixtures and on small corpora made in
// a temporary folder (no network). Run by test_data.sh; the last line is "N passed, M failed".
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const zlib = require('zlib');
const crypto = require('crypto');
const assert = require('assert/strict');
const { spawnSync } = require('child_process');
const gpt2 = require('./gpt2');
const { readShard } = require('./shards');
const { listPyFiles } = require('./sources');

const PREPARE = path.join(__dirname, 'prepare.js');
const FIXTURES = path.join(__dirname, 'fixtures', 'sample');
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'test-data-'));
const utf8 = new TextDecoder('utf-8', { fatal: true }); // as prepare.js: drops a leading BOM

// ---- helpers ---------------------------------------------------------------------------

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

let dirCount = 0;
const tmpDir = (label) => {
  const d = path.join(TMP, `${label}-${dirCount++}`);
  fs.mkdirSync(d, { recursive: true });
  return d;
};

// Runs prepare.js; returns { status, stdout, stderr }.
function prepare(args) {
  const r = spawnSync(process.execPath, [PREPARE, '-q', ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function prepareOk(args) {
  const r = prepare(args);
  assert.equal(r.status, 0, `prepare ${args.join(' ')} failed:\n${r.stderr}`);
  return r;
}

// A fatal error: exit 1 and one error line, "prepare: error: ..." matching re, last on stderr
// (after any warnings about skipped files).
function prepareFails(args, re) {
  const r = prepare(args);
  assert.equal(r.status, 1, `expected exit 1, got ${r.status}; stderr:\n${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.filter((l) => l.includes('error')).length, 1, `expected one error line, got:\n${r.stderr}`);
  assert.match(lines[lines.length - 1], /^prepare: error: /);
  assert.match(lines[lines.length - 1], re);
  assert.ok(lines.slice(0, -1).every((l) => l.startsWith('prepare: warning: ')), r.stderr);
}

const readJson = (f) => JSON.parse(fs.readFileSync(f, 'utf8'));

// NAME_files.tsv as objects { path, sha256, bytes, tokens, split }.
function readTsv(file) {
  const [head, ...lines] = fs.readFileSync(file, 'utf8').trim().split('\n');
  const cols = head.split('\t');
  return lines.map((l) => Object.fromEntries(l.split('\t').map((v, i) => [cols[i], v])));
}

const shards = (out, name, split) => fs.readdirSync(out)
  .filter((f) => new RegExp(`^${name}_${split}_\\d{6}\\.bin$`).test(f)).sort()
  .map((f) => path.join(out, f));

const allTokens = (out, name, split) => {
  const parts = shards(out, name, split).map(readShard);
  const all = new Uint16Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) { all.set(p, off); off += p.length; }
  return all;
};

const fileText = (file) => utf8.decode(fs.readFileSync(file));
const ids = (text) => gpt2.encodeOrdinary(text); // js-tiktoken itself

// The full T-token chunks of a token list, as comma-joined strings (for multiset compares).
function chunksOf(tokens, T) {
  const out = [];
  for (let k = 0; k + T <= tokens.length; k += T) out.push(Array.from(tokens.slice(k, k + T)).join(','));
  return out;
}

// Expected chunks of one split: every file of that split in the files table, under root.
function expectedChunks(rows, root, split, T) {
  return rows.filter((r) => r.split === split).flatMap((r) => chunksOf(ids(fileText(path.join(root, r.path))), T));
}

const sortedEq = (a, b, msg) => assert.deepEqual([...a].sort(), [...b].sort(), msg);
const sameBytes = (a, b) => assert.ok(fs.readFileSync(a).equals(fs.readFileSync(b)), `${a} != ${b}`);

// A folder of small Python files, for the bad-source tests.
function makeCorpus(files) {
  const d = tmpDir('src');
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(d, name)), { recursive: true });
    fs.writeFileSync(path.join(d, name), content);
  }
  return d;
}
const GOOD = fs.readFileSync(path.join(FIXTURES, 'geometry.py'), 'utf8');

// One shared sample build (default options) that several tests read.
let sampleOut = null;
const sample = () => {
  if (sampleOut === null) {
    sampleOut = tmpDir('sample');
    prepareOk(['--sample', '--out', sampleOut]);
  }
  return sampleOut;
};

// ---- tokenizer ---------------------------------------------------------------------------

test('js-tiktoken gives GPT-2 ids (known values)', () => {
  assert.deepEqual(ids('Hello world'), [15496, 995]);
  // a special token's text is ordinary text, never EOT
  assert.deepEqual(ids('<|endoftext|>'), [27, 91, 437, 1659, 5239, 91, 29]);
  assert.deepEqual(ids('def f(x):\n    return x'), [4299, 277, 7, 87, 2599, 198, 220, 220, 220, 1441, 2124]);
});

test('cached encoder equals js-tiktoken on every fixture and on odd text', () => {
  const enc = new gpt2.CachedEncoder(50); // small cache: also exercises eviction
  const texts = listPyFiles(FIXTURES).map((f) => fileText(f.abs));
  texts.push(' \n\t\r\n  x  ', "it's we'll they've 'd", 'a\u00a0b\u3000c', '😀😀 naïve 1234567 +-*/', '');
  assert.ok(texts.length >= 12);
  for (const t of texts) {
    assert.deepEqual(enc.encode(t), ids(t));
    assert.deepEqual(enc.encode(t), ids(t)); // second time from the cache
  }
});

test('gpt2_tokenizer.bin: header, 50257 entries, decodes fixtures back to their bytes', () => {
  const buf = fs.readFileSync(path.join(sample(), 'gpt2_tokenizer.bin'));
  assert.deepEqual([0, 1, 2, 3].map((i) => buf.readInt32LE(4 * i)), [20240328, 2, 50257, 50256]);
  for (let i = 4; i < 256; i++) assert.equal(buf.readInt32LE(4 * i), 0);
  const table = [];
  let off = 1024;
  while (off < buf.length) {
    const len = buf[off];
    assert.ok(len >= 1);
    table.push(buf.subarray(off + 1, off + 1 + len));
    off += 1 + len;
  }
  assert.equal(off, buf.length);
  assert.equal(table.length, 50257);
  assert.equal(table[50256].toString(), '<|endoftext|>');
  assert.equal(table[15496].toString(), 'Hello');
  assert.equal(table[220].toString(), ' ');
  for (const f of ['geometry.py', 'cli_tool.py', 'matrix_ops.py', 'textstats.py', 'crlf_endings.py']) {
    const raw = fs.readFileSync(path.join(FIXTURES, f));
    const decoded = Buffer.concat(ids(raw.toString('utf8')).map((t) => table[t]));
    assert.ok(decoded.equals(raw), `${f} does not decode back`);
  }
});

// ---- chunking ------------------------------------------------------------------------------

test('sample build: shard headers and sizes (magic 20240520, 1024 + 2N bytes)', () => {
  const out = sample();
  for (const split of ['train', 'val']) {
    const files = shards(out, 'pysample', split);
    assert.equal(files.length, 1);
    const buf = fs.readFileSync(files[0]);
    const n = buf.readInt32LE(8);
    assert.deepEqual([buf.readInt32LE(0), buf.readInt32LE(4)], [20240520, 1]);
    assert.equal(buf.length, 1024 + 2 * n);
    assert.ok(n > 0 && n % 128 === 0, `${split}: ${n} tokens is not whole 128-token chunks`);
  }
  const m = readJson(path.join(out, 'pysample_manifest.json'));
  assert.equal(m.options.T, 128);
  assert.equal(m.files.used, m.files.train + m.files.val);
});

test('chunks (T=128, shuffled) are exactly the full 128-token slices of each file', () => {
  const out = sample();
  const rows = readTsv(path.join(out, 'pysample_files.tsv'));
  for (const split of ['train', 'val']) {
    sortedEq(chunksOf(allTokens(out, 'pysample', split), 128), expectedChunks(rows, FIXTURES, split, 128), split);
  }
  // the files table records js-tiktoken's count; the remainder of each file is dropped
  const m = readJson(path.join(out, 'pysample_manifest.json'));
  let dropped = 0;
  for (const r of rows.filter((x) => x.split === 'train' || x.split === 'val')) {
    const n = ids(fileText(path.join(FIXTURES, r.path))).length;
    assert.equal(Number(r.tokens), n, r.path);
    dropped += n % 128;
  }
  assert.equal(m.tokens.dropped, dropped);
  assert.ok(dropped > 0);
});

test('--no-shuffle -T 16: the shard is each file\'s chunks in file order, remainder dropped', () => {
  const out = tmpDir('noshuf');
  prepareOk(['--sample', '--out', out, '-T', '16', '--no-shuffle', '--val-frac', '0']);
  const rows = readTsv(path.join(out, 'pysample_files.tsv'));
  const expected = rows.filter((r) => r.split === 'train').flatMap((r) => {
    const t = ids(fileText(path.join(FIXTURES, r.path)));
    return t.slice(0, t.length - (t.length % 16));
  });
  assert.deepEqual(Array.from(allTokens(out, 'pysample', 'train')), expected);
  assert.equal(readShard(shards(out, 'pysample', 'val')[0]).length, 0); // empty val split
  // the shuffled build holds the same chunks, in another order
  const out2 = tmpDir('shuf');
  prepareOk(['--sample', '--out', out2, '-T', '16', '--val-frac', '0']);
  const shuffled = allTokens(out2, 'pysample', 'train');
  assert.notDeepEqual(Array.from(shuffled), expected);
  sortedEq(chunksOf(shuffled, 16), chunksOf(expected, 16));
});

test('no chunk contains EOT; "<|endoftext|>" in a file stays text', () => {
  const out = sample();
  for (const split of ['train', 'val']) assert.ok(!allTokens(out, 'pysample', split).includes(50256));
  const rows = readTsv(path.join(out, 'pysample_files.tsv'));
  assert.ok(rows.some((r) => r.path === 'special_text.py' && (r.split === 'train' || r.split === 'val')));
});

test('--eot: llm.c stream, each file as EOT + its tokens, no chunking', () => {
  const out = tmpDir('eot');
  prepareOk(['--sample', '--out', out, '--eot']);
  const rows = readTsv(path.join(out, 'pysample_files.tsv'));
  for (const split of ['train', 'val']) {
    const stream = Array.from(allTokens(out, 'pysample', split));
    const expected = rows.filter((r) => r.split === split)
      .flatMap((r) => [50256, ...ids(fileText(path.join(FIXTURES, r.path)))]);
    assert.deepEqual(stream, expected, split);
  }
  assert.equal(readJson(path.join(out, 'pysample_manifest.json')).options.mode, 'eot');
});

test('--shard-tokens: shards of whole chunks, stale shards removed on rebuild', () => {
  const out = tmpDir('shards');
  prepareOk(['--sample', '--out', out, '-T', '32', '--shard-tokens', '300', '--val-frac', '0']);
  const many = shards(out, 'pysample', 'train');
  assert.ok(many.length >= 5, `${many.length} shards`);
  const sizes = many.map((f) => readShard(f).length);
  sizes.slice(0, -1).forEach((n) => assert.equal(n, 288)); // 300 rounded down to 9 chunks
  assert.ok(sizes[sizes.length - 1] % 32 === 0 && sizes[sizes.length - 1] <= 288);
  prepareOk(['--sample', '--out', out, '-T', '32', '--val-frac', '0']);
  assert.equal(shards(out, 'pysample', 'train').length, 1);
});

test('verify.js passes on chunk and EOT builds, and catches a changed token', () => {
  const verify = (out) => spawnSync(process.execPath, [path.join(__dirname, 'verify.js'), '--out', out, '--name', 'pysample'], { encoding: 'utf8' });
  const out = tmpDir('verify');
  prepareOk(['--sample', '--out', out, '-T', '32']);
  assert.equal(verify(out).status, 0, verify(out).stderr);
  const eot = tmpDir('verify');
  prepareOk(['--sample', '--out', eot, '--eot']);
  assert.equal(verify(eot).status, 0, verify(eot).stderr);
  const shard = shards(out, 'pysample', 'train')[0];
  const buf = fs.readFileSync(shard);
  buf.writeUInt16LE((buf.readUInt16LE(1024 + 100) + 1) % 50257, 1024 + 100);
  fs.writeFileSync(shard, buf);
  const bad = verify(out);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /is not in the train shards/);
});

// ---- split and determinism ---------------------------------------------------------------

test('split by content hash: rule holds, duplicates kept once, no file in both splits', () => {
  const out = sample();
  const rows = readTsv(path.join(out, 'pysample_files.tsv'));
  const used = rows.filter((r) => r.split === 'train' || r.split === 'val');
  assert.ok(used.some((r) => r.split === 'val') && used.some((r) => r.split === 'train'));
  for (const r of used) {
    const sha = crypto.createHash('sha256').update(fs.readFileSync(path.join(FIXTURES, r.path))).digest('hex');
    assert.equal(r.sha256, sha.slice(0, 16));
    assert.equal(r.split, parseInt(sha.slice(0, 13), 16) / 2 ** 52 < 0.25 ? 'val' : 'train', r.path);
  }
  const trainHashes = new Set(used.filter((r) => r.split === 'train').map((r) => r.sha256));
  assert.ok(used.filter((r) => r.split === 'val').every((r) => !trainHashes.has(r.sha256)));
  assert.equal(new Set(used.map((r) => r.sha256)).size, used.length);
  const dups = rows.filter((r) => r.split === 'duplicate');
  assert.equal(dups.length, 1); // tiny.py and pkg/tiny_copy.py are the same bytes
  assert.ok(used.some((r) => r.sha256 === dups[0].sha256));
});

test('determinism: two builds (2 workers, 0 workers) give identical bytes', () => {
  const a = tmpDir('det');
  const b = tmpDir('det');
  prepareOk(['--sample', '--out', a]);
  prepareOk(['--sample', '--out', b, '--workers', '0', '--force']);
  for (const f of fs.readdirSync(a).filter((x) => !x.endsWith('manifest.json'))) sameBytes(path.join(a, f), path.join(b, f));
  assert.deepEqual(readJson(path.join(a, 'pysample_manifest.json')).outputs, readJson(path.join(b, 'pysample_manifest.json')).outputs);
});

test('second run does no work; --force rebuilds the same bytes', () => {
  const out = tmpDir('stamp');
  prepareOk(['--sample', '--out', out]);
  const train = shards(out, 'pysample', 'train')[0];
  const before = fs.readFileSync(train);
  const mtime = fs.statSync(train).mtimeMs;
  const again = prepareOk(['--sample', '--out', out]);
  assert.match(again.stdout, /up to date/);
  assert.equal(fs.statSync(train).mtimeMs, mtime);
  const forced = prepareOk(['--sample', '--out', out, '--force']);
  assert.doesNotMatch(forced.stdout, /up to date/);
  assert.ok(fs.readFileSync(train).equals(before));
  // a different option is a different build
  assert.doesNotMatch(prepareOk(['--sample', '--out', out, '-T', '64']).stdout, /up to date/);
});

// ---- other sources -----------------------------------------------------------------------

test('dir source: nested folders, CRLF and a BOM (dropped), non-.py files ignored', () => {
  const src = makeCorpus({
    'a.py': GOOD,
    'deep/er/b.py': `\ufeff${'import os\r\nprint(os.getcwd())\r\n'.repeat(20)}`,
    'notes.txt': 'not python',
  });
  const out = tmpDir('dir');
  prepareOk(['--source', `dir:${src}`, '--out', out, '--name', 'mine', '-T', '8', '--val-frac', '0']);
  const rows = readTsv(path.join(out, 'mine_files.tsv'));
  assert.deepEqual(rows.map((r) => r.path).sort(), ['a.py', path.join('deep', 'er', 'b.py')]);
  const bom = rows.find((r) => r.path.endsWith('b.py'));
  assert.equal(Number(bom.tokens), ids('import os\r\nprint(os.getcwd())\r\n'.repeat(20)).length);
  sortedEq(chunksOf(allTokens(out, 'mine', 'train'), 8), [
    ...chunksOf(ids(GOOD), 8), ...chunksOf(ids('import os\r\nprint(os.getcwd())\r\n'.repeat(20)), 8)]);
});

test('bad files are skipped with a count and a warning naming them', () => {
  const src = makeCorpus({
    'good.py': GOOD,
    'binary.py': Buffer.from([0x70, 0x72, 0x00, 0x01, 0x02]),
    'latin1.py': Buffer.from('# caf\xe9\nx = 1\n', 'latin1'),
    'empty.py': '',
    'long.py': `x = "${'a'.repeat(1200)}"\n`,
  });
  fs.symlinkSync(path.join(src, 'gone.py'), path.join(src, 'dangling.py')); // unreadable
  const out = tmpDir('bad');
  const r = prepareOk(['--source', `dir:${src}`, '--out', out, '-T', '16']);
  assert.match(r.stdout, /1 used .* 5 skipped \(1 unreadable, 1 empty, 1 binary, 1 non_utf8, 1 long_line\)/);
  const m = readJson(path.join(out, 'pycode_manifest.json'));
  assert.deepEqual(m.files.skipped, {
    unreadable: 1, empty: 1, too_large: 0, binary: 1, non_utf8: 1, long_line: 1, bad_json: 0, no_content: 0,
  });
  for (const name of ['binary.py', 'latin1.py', 'long.py', 'dangling.py']) { // empty ones: counted only
    assert.match(r.stderr, new RegExp(`warning: skipped ${name.replace('.', '\\.')}: `));
  }
  const rows = readTsv(path.join(out, 'pycode_files.tsv'));
  assert.equal(rows.find((x) => x.path === 'latin1.py').split, 'skipped:non_utf8');
  assert.equal(rows.find((x) => x.path === 'good.py').tokens, String(ids(GOOD).length));
});

test('unreadable file (no read permission) is skipped', () => {
  const src = makeCorpus({ 'good.py': GOOD, 'secret.py': GOOD.replace('math', 'cmath') });
  fs.chmodSync(path.join(src, 'secret.py'), 0o000);
  let readable = true;
  try { fs.readFileSync(path.join(src, 'secret.py')); } catch (e) { readable = false; }
  const out = tmpDir('perm');
  const r = prepareOk(['--source', `dir:${src}`, '--out', out]);
  const m = readJson(path.join(out, 'pycode_manifest.json'));
  // root reads any file: then the file is simply used
  assert.equal(m.files.skipped.unreadable, readable ? 0 : 1);
  assert.equal(m.files.used, readable ? 2 : 1);
  if (!readable) assert.match(r.stderr, /skipped secret\.py: unreadable/);
});

test('bad sources and options: one clear error line, exit 1', () => {
  const out = tmpDir('err');
  prepareFails(['--source', `dir:${path.join(TMP, 'no-such-folder')}`, '--out', out], /source folder not found/);
  prepareFails(['--source', `dir:${tmpDir('empty')}`, '--out', out], /no \.py files under/);
  prepareFails(['--source', `dir:${makeCorpus({ 'readme.md': '# hi' })}`, '--out', out], /no \.py files under/);
  prepareFails(['--source', `dir:${makeCorpus({ 'a.py': '', 'b.py': Buffer.from([0, 1]) })}`, '--out', out], /no usable files/);
  prepareFails(['--source', `dir:${path.join(FIXTURES, 'tiny.py')}`, '--out', out], /not a folder/);
  prepareFails(['--source', `jsonl:${path.join(TMP, 'none.jsonl')}`, '--out', out], /JSONL file not found/);
  prepareFails(['--source', 'ftp:x', '--out', out], /bad --source/);
  prepareFails(['--sample', '--bogus'], /unknown option '--bogus'/);
  prepareFails(['--sample', '-T', '0'], /-T needs an integer >= 1/);
  prepareFails(['--sample', '--val-frac', '1.5'], /--val-frac needs a number in \[0, 1\)/);
  prepareFails(['--sample', '--name', '../x'], /bad --name/);
  prepareFails(['--sample', '--out'], /--out needs a value/);
  prepareFails(['--source', 'debian', '--packages', path.join(TMP, 'none.txt'), '--out', out], /package list not found/);
});

function writeJsonl(records) {
  const d = tmpDir('jsonl');
  const lines = records.map((r) => (typeof r === 'string' ? r : JSON.stringify(r)));
  const text = `${lines.join('\n')}\n`;
  fs.writeFileSync(path.join(d, 'data.jsonl'), text);
  fs.writeFileSync(path.join(d, 'data.jsonl.gz'), zlib.gzipSync(text));
  return d;
}

test('jsonl(.gz) source: "content" field, corrupt line reported with its line number', () => {
  const texts = ['geometry.py', 'cli_tool.py', 'matrix_ops.py'].map((f) => fileText(path.join(FIXTURES, f)));
  const d = writeJsonl([
    { repo_name: 'a/b', path: 'geometry.py', content: texts[0] },
    { content: texts[1], license: 'mit' },
    '{"content": "broken',
    { path: 'no content here' },
    { content: texts[2] },
    '{"content": "x = \\ud800\\n"}', // JSON-escaped lone surrogate: not valid Unicode text
  ]);
  const plain = tmpDir('jl');
  const gz = tmpDir('jlgz');
  const r = prepareOk(['--source', `jsonl:${path.join(d, 'data.jsonl')}`, '--out', plain, '-T', '16', '--val-frac', '0']);
  assert.match(r.stderr, /warning: skipped data\.jsonl:3: bad json: invalid JSON/);
  assert.match(r.stderr, /warning: skipped data\.jsonl:4: no content/);
  const m = readJson(path.join(plain, 'pycode_manifest.json'));
  assert.equal(m.files.skipped.bad_json, 1);
  assert.equal(m.files.skipped.no_content, 1);
  assert.equal(m.files.skipped.non_utf8, 1);
  assert.match(r.stderr, /warning: skipped data\.jsonl:6: lone surrogate/);
  assert.equal(m.files.used, 3);
  sortedEq(chunksOf(allTokens(plain, 'pycode', 'train'), 16), texts.flatMap((t) => chunksOf(ids(t), 16)));
  // the gzipped export gives the same shards
  prepareOk(['--source', `jsonl:${path.join(d, 'data.jsonl.gz')}`, '--out', gz, '-T', '16', '--val-frac', '0']);
  sameBytes(shards(plain, 'pycode', 'train')[0], shards(gz, 'pycode', 'train')[0]);
  assert.deepEqual(readTsv(path.join(gz, 'pycode_files.tsv')).map((x) => x.path),
    [1, 2, 3, 4, 5, 6].map((i) => `data.jsonl.gz:${i}`));
});

test('jsonl: truncated gzip and an empty file are fatal', () => {
  const d = writeJsonl([{ content: GOOD }, { content: GOOD.toUpperCase() }]);
  const gzBytes = fs.readFileSync(path.join(d, 'data.jsonl.gz'));
  fs.writeFileSync(path.join(d, 'cut.jsonl.gz'), gzBytes.subarray(0, gzBytes.length - 40));
  fs.writeFileSync(path.join(d, 'empty.jsonl'), '');
  const out = tmpDir('jlerr');
  prepareFails(['--source', `jsonl:${path.join(d, 'cut.jsonl.gz')}`, '--out', out], /cannot read .*cut\.jsonl\.gz/);
  prepareFails(['--source', `jsonl:${path.join(d, 'empty.jsonl')}`, '--out', out], /no records in/);
});

test('debian source, offline: a local .deb in the cache is unpacked and recorded', () => {
  const hasDpkg = spawnSync('dpkg-deb', ['--version']).status === 0;
  if (!hasDpkg) { console.log('  (no dpkg-deb here: skipped)'); return; }
  // Build python3-fakepkg_1.2-3_all.deb from the fixtures with dpkg-deb -b.
  const pkgRoot = tmpDir('deb');
  const site = path.join(pkgRoot, 'usr/lib/python3/dist-packages/fakepkg');
  fs.mkdirSync(site, { recursive: true });
  fs.mkdirSync(path.join(pkgRoot, 'DEBIAN'));
  for (const f of ['geometry.py', 'cli_tool.py', 'tiny.py']) fs.copyFileSync(path.join(FIXTURES, f), path.join(site, f));
  fs.writeFileSync(path.join(site, 'README.txt'), 'not python');
  fs.symlinkSync('geometry.py', path.join(site, 'link.py'));
  fs.writeFileSync(path.join(pkgRoot, 'DEBIAN/control'),
    'Package: python3-fakepkg\nVersion: 1.2-3\nArchitecture: all\nMaintainer: Test <t@example.org>\nDescription: test package\n');
  const cache = tmpDir('cache');
  fs.mkdirSync(path.join(cache, 'debs'));
  const deb = path.join(cache, 'debs', 'python3-fakepkg_1.2-3_all.deb');
  const b = spawnSync('dpkg-deb', ['--root-owner-group', '-b', pkgRoot, deb], { encoding: 'utf8' });
  assert.equal(b.status, 0, b.stderr);
  const list = path.join(tmpDir('list'), 'packages.txt');
  fs.writeFileSync(list, '# test list\npython3-fakepkg   # the only one\n\n');
  const out = tmpDir('debout');
  prepareOk(['--source', 'debian', '--packages', list, '--cache', cache, '--out', out, '-T', '16', '--val-frac', '0']);
  const m = readJson(path.join(out, 'pycode_manifest.json'));
  assert.equal(m.packages.length, 1);
  const p = m.packages[0];
  assert.equal(p.name, 'python3-fakepkg');
  assert.equal(p.version, '1.2-3');
  assert.equal(p.deb, 'python3-fakepkg_1.2-3_all.deb');
  assert.equal(p.sha256, crypto.createHash('sha256').update(fs.readFileSync(deb)).digest('hex'));
  assert.equal(p.files, 3); // the symlink and README.txt are not used
  assert.equal(p.used, 3);
  assert.equal(fs.readFileSync(path.join(out, 'pycode_packages.lock'), 'utf8').split('\n')[1], 'python3-fakepkg=1.2-3');
  const rows = readTsv(path.join(out, 'pycode_files.tsv'));
  assert.ok(rows.every((r) => r.path.startsWith('python3-fakepkg/usr/lib/python3/dist-packages/fakepkg/')));
  sortedEq(chunksOf(allTokens(out, 'pycode', 'train'), 16), ['geometry.py', 'cli_tool.py', 'tiny.py']
    .flatMap((f) => chunksOf(ids(fileText(path.join(FIXTURES, f))), 16)));
  // the pinned lock file rebuilds the same shard from the cache
  const out2 = tmpDir('debout');
  prepareOk(['--source', 'debian', '--packages', path.join(out, 'pycode_packages.lock'), '--cache', cache,
    '--out', out2, '-T', '16', '--val-frac', '0']);
  sameBytes(shards(out, 'pycode', 'train')[0], shards(out2, 'pycode', 'train')[0]);
});

// ---- run ---------------------------------------------------------------------------------

let passed = 0;
let failed = 0;
const t0 = Date.now();
for (const t of tests) {
  try {
    t.fn();
    passed++;
    console.log(`ok   ${t.name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${t.name}\n     ${String(e.message).split('\n').join('\n     ')}`);
  }
}
fs.rmSync(TMP, { recursive: true, force: true });
console.log(`(${((Date.now() - t0) / 1000).toFixed(1)} s)`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
