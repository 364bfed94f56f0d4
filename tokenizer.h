// tokenizer.h: decodes token ids to text with llm.c's gpt2_tokenizer.bin (magic 20240328), so
// samples print as text. Only decoding: encoding is the data pipeline's job (dev/data/).
#pragma once

#include <cctype>
#include <string>
#include <vector>
#include "common.h"

#define TOKENIZER_MAGIC 20240328

struct Tokenizer {
    bool ok;
    int eot_token;
    std::vector<std::string> tokens;
};

// Loads the decode table if the file exists; a missing file is not an error (ids are printed
// instead), but a corrupt one is.
inline void tokenizer_init(Tokenizer* t, const char* path) {
    t->ok = false;
    t->eot_token = 50256;
    t->tokens.clear();
    FILE* f = fopen(path, "rb");
    if (f == NULL) return;
#ifdef FUZZING
    fuzz_open_files().push_back(f);
#endif
    long size = file_size_or_fail(f, path);
    int32_t h[256];
    if (size < (long)sizeof(h)) fail("tokenizer '%s' is truncated: %ld bytes, less than its 1024-byte header (re-create it or delete it)", path, size);
    fread_or_fail(h, sizeof(int32_t), 256, f, path);
    if (h[0] != TOKENIZER_MAGIC) fail("'%s' is not a tokenizer file (magic %d, expected %d)", path, h[0], TOKENIZER_MAGIC);
    if (h[1] != 1 && h[1] != 2) fail("tokenizer '%s' has unknown version %d", path, h[1]);
    // every token takes at least 2 bytes (a length byte and one character): check the count
    // against the file's length before allocating anything for it
    if (h[2] <= 0 || h[2] > (1 << 24) || (long)h[2] * 2 > size - (long)sizeof(h))
        fail("tokenizer '%s' has an impossible vocabulary size %d for its %ld bytes (re-create it or delete it)", path, h[2], size);
    if (h[1] == 2) t->eot_token = h[3];
    if (h[1] == 2 && (t->eot_token < 0 || t->eot_token >= h[2]))
        fail("tokenizer '%s' has end-of-text id %d, outside its %d tokens (re-create it or delete it)", path, t->eot_token, h[2]);
    t->tokens.resize(h[2]);
    for (int i = 0; i < h[2]; i++) {
        unsigned char len;
        fread_or_fail(&len, 1, 1, f, path);
        if (len == 0) fail("tokenizer '%s' has an empty token %d", path, i);
        std::string s(len, '\0');
        fread_or_fail(&s[0], 1, len, f, path);
        t->tokens[i] = s;
    }
    close_file(f);
    t->ok = true;
}

// The text of one token, or "<id>" when the table is missing or the id is past it.
inline std::string tokenizer_decode(const Tokenizer* t, int id) {
    if (!t->ok || id < 0 || id >= (int)t->tokens.size()) return "<" + std::to_string(id) + ">";
    return t->tokens[id];
}
