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
    FILE* f = fopen(path, "rb");
    if (f == NULL) return;
    int32_t h[256];
    fread_or_fail(h, sizeof(int32_t), 256, f, path);
    if (h[0] != TOKENIZER_MAGIC) fail("'%s' is not a tokenizer file (magic %d, expected %d)", path, h[0], TOKENIZER_MAGIC);
    if (h[1] != 1 && h[1] != 2) fail("tokenizer '%s' has unknown version %d", path, h[1]);
    if (h[2] <= 0 || h[2] > (1 << 24)) fail("tokenizer '%s' has an impossible vocabulary size %d", path, h[2]);
    if (h[1] == 2) t->eot_token = h[3];
    t->tokens.resize(h[2]);
    for (int i = 0; i < h[2]; i++) {
        unsigned char len;
        fread_or_fail(&len, 1, 1, f, path);
        if (len == 0) fail("tokenizer '%s' has an empty token %d", path, i);
        std::string s(len, '\0');
        fread_or_fail(&s[0], 1, len, f, path);
        t->tokens[i] = s;
    }
    fclose(f);
    t->ok = true;
}

// The text of one token, or "<id>" when the table is missing or the id is past it.
inline std::string tokenizer_decode(const Tokenizer* t, int id) {
    if (!t->ok || id < 0 || id >= (int)t->tokens.size()) return "<" + std::to_string(id) + ">";
    return t->tokens[id];
}
