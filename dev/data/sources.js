// sources.js: where the Python files come from. Each source yields items
//   { rel, group, bytes: Buffer }            a file's raw bytes (folder, sample, Debian), or
//   { rel, group, text: string }             a JSONL record's "content", or
//   { rel, group, error: 'unreadable'|'bad_json'|'no_content', detail }   a bad item,
// in a deterministic order. Fatal problems throw UserError (one clear line, exit 1).
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const crypto = require('crypto');
const readline = require('readline');
const { spawnSync } = require('child_process');

class UserError extends Error {}

const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');

// All *.py files under root (symlinked files are followed, symlinked folders are not),
// as { rel, abs, size, mtimeMs } with rel relative to root; size -1 when stat fails.
function listPyFiles(root) {
  const files = [];
  const walk = (dir) => {
    let entries;
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch (e) {
      throw new UserError(`cannot read folder ${dir}: ${e.code || e.message}`);
    }
    for (const e of entries) {
      const abs = path.join(dir, e.name);
      if (e.isDirectory()) { walk(abs); continue; }
      if (!e.name.endsWith('.py') || !(e.isFile() || e.isSymbolicLink())) continue;
      let st = null;
      try { st = fs.statSync(abs); } catch (err) { /* dangling link: reported as unreadable */ }
      if (st !== null && !st.isFile()) continue;
      files.push({ rel: path.relative(root, abs), abs, size: st ? st.size : -1, mtimeMs: st ? st.mtimeMs : 0 });
    }
  };
  walk(root);
  return files;
}

// Processing order of folder files: by a hash of the relative path. Deterministic, and it mixes
// packages and subfolders, so consecutive files (and shards) are not all from one place.
function orderFiles(files) {
  const key = new Map(files.map((f) => [f, sha256(f.rel)]));
  return files.sort((a, b) => (key.get(a) < key.get(b) ? -1 : key.get(a) > key.get(b) ? 1 : 0));
}

function* readItems(files, groupOf) {
  for (const f of files) {
    const item = { rel: f.rel, group: groupOf(f) };
    try {
      item.bytes = fs.readFileSync(f.abs);
    } catch (e) {
      item.error = 'unreadable';
      item.detail = e.code || e.message;
    }
    yield item;
  }
}

// A folder of .py files (also the sample fixtures).
function dirSource(root, label) {
  let st;
  try { st = fs.statSync(root); } catch (e) { throw new UserError(`source folder not found: ${root}`); }
  if (!st.isDirectory()) throw new UserError(`source is not a folder: ${root}`);
  const files = orderFiles(listPyFiles(root));
  if (files.length === 0) throw new UserError(`no .py files under ${root}`);
  return {
    kind: label,
    describe: `${label} ${root}`,
    root,
    // Inputs for the up-to-date check: every file's name, size and modification time.
    stampKey: files.map((f) => `${f.rel}\t${f.size}\t${f.mtimeMs}`).sort().join('\n'),
    prepare() {},
    totalBytes: files.reduce((s, f) => s + Math.max(f.size, 0), 0),
    groups: null,
    items: () => readItems(files, () => label),
  };
}

// Python files from a pinned list of Debian packages, downloaded and unpacked by
// fetch_debian.sh into cacheDir (nothing is installed). Group = package name.
function debianSource(packagesFile, cacheDir) {
  let listText;
  try { listText = fs.readFileSync(packagesFile, 'utf8'); } catch (e) {
    throw new UserError(`package list not found: ${packagesFile}`);
  }
  const src = {
    kind: 'debian',
    describe: `debian packages from ${packagesFile}`,
    root: path.join(cacheDir, 'root'),
    stampKey: listText,
    totalBytes: 0,
    groups: null,
    files: null,
    // Runs fetch_debian.sh, then lists the unpacked .py files of each package.
    prepare() {
      const script = path.join(__dirname, 'fetch_debian.sh');
      const r = spawnSync('bash', [script, packagesFile, cacheDir], { stdio: ['ignore', 2, 2] });
      if (r.status !== 0) throw new UserError('fetching the Debian packages failed (see the lines above)');
      const tsv = fs.readFileSync(path.join(cacheDir, 'packages.tsv'), 'utf8').trim().split('\n').slice(1);
      src.groups = tsv.map((line) => {
        const [name, version, deb, debSha256] = line.split('\t');
        return { name, version, deb, sha256: debSha256 };
      });
      const files = [];
      for (const g of src.groups) {
        const root = path.join(cacheDir, 'root', g.name);
        for (const f of listPyFiles(root)) files.push({ ...f, rel: `${g.name}/${f.rel}`, pkg: g.name });
      }
      src.files = orderFiles(files);
      src.totalBytes = files.reduce((s, f) => s + Math.max(f.size, 0), 0);
    },
    items: () => readItems(src.files, (f) => f.pkg),
  };
  return src;
}

// A CodeParrot-style JSONL export, optionally gzipped (detected by its magic bytes): one JSON
// object per line, the source text in "content". Items come in line order; rel = FILE:LINE.
function jsonlSource(file) {
  let st;
  try { st = fs.statSync(file); } catch (e) { throw new UserError(`JSONL file not found: ${file}`); }
  if (!st.isFile()) throw new UserError(`JSONL source is not a file: ${file}`);
  const base = path.basename(file);
  let bytesRead = 0; // compressed bytes consumed, for the progress bar
  return {
    kind: 'jsonl',
    describe: `jsonl ${file}`,
    stampKey: `${path.resolve(file)}\t${st.size}\t${st.mtimeMs}`,
    prepare() {},
    totalBytes: st.size,
    bytesRead: () => bytesRead,
    groups: null,
    async *items() {
      const fd = fs.openSync(file, 'r');
      const magic = Buffer.alloc(2);
      const gz = fs.readSync(fd, magic, 0, 2, 0) === 2 && magic[0] === 0x1f && magic[1] === 0x8b;
      fs.closeSync(fd);
      const raw = fs.createReadStream(file);
      raw.on('data', (chunk) => { bytesRead += chunk.length; });
      let stream = raw;
      if (gz) {
        stream = zlib.createGunzip();
        raw.on('error', (e) => stream.destroy(e));
        raw.pipe(stream);
      }
      const lines = readline.createInterface({ input: stream, crlfDelay: Infinity });
      let lineNo = 0;
      let records = 0;
      try {
        for await (const line of lines) {
          lineNo++;
          if (line.trim() === '') continue;
          records++;
          const item = { rel: `${base}:${lineNo}`, group: base };
          let obj;
          try {
            obj = JSON.parse(line);
          } catch (e) {
            yield { ...item, error: 'bad_json', detail: `invalid JSON (${e.message})` };
            continue;
          }
          if (obj === null || typeof obj !== 'object' || typeof obj.content !== 'string') {
            yield { ...item, error: 'no_content', detail: 'no string field "content"' };
            continue;
          }
          yield { ...item, text: obj.content };
        }
      } catch (e) {
        throw new UserError(`cannot read ${file} after line ${lineNo}: ${e.message}`);
      }
      if (records === 0) throw new UserError(`no records in ${file}`);
    },
  };
}

module.exports = { UserError, sha256, listPyFiles, dirSource, debianSource, jsonlSource };
