// fuzz/fuzz_tokenizer.cpp: the tokenizer reader (tokenizer.h: tokenizer_init) and decoding,
// including ids past the table. Seeds: fuzz/corpus/tokenizer.
#include "fuzz_util.h"
#include "../tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = fuzz_scratch_path("gpt2_tokenizer.bin");
    fuzz_write_file(path, data, size);
    fuzz_run([&] {
        Tokenizer t;
        tokenizer_init(&t, path.c_str());
        fuzz_require(t.ok);
        // the table never claims more than the file holds (two bytes a token at least)
        fuzz_require(t.tokens.size() * 2 + 1024 <= size);
        fuzz_require(t.eot_token >= 0);
        int n = (int)t.tokens.size();
        for (int id : {-1, 0, n - 1, n, t.eot_token}) (void)tokenizer_decode(&t, id);
    });
    return 0;
}
