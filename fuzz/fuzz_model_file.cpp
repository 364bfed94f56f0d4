// fuzz/fuzz_model_file.cpp: the model file reader (model_file.h: open_model_file, then
// read_model_params), as both trainers load -e FILE and every checkpoint. Seeds: fuzz/corpus/model_file.
#include <vector>
#include "fuzz_util.h"
#include "../model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = fuzz_scratch_path("model.bin");
    fuzz_write_file(path, data, size);
    fuzz_run([&] {
        GPT2Config c;
        int stored_slopes;
        FILE* f = open_model_file(path.c_str(), &c, &stored_slopes);
        // a model the reader accepts has a shape that fits and a length that matches it
        size_t n = count_params(c, true);
        fuzz_require(c.channels % c.num_heads == 0 && c.padded_vocab_size >= c.vocab_size);
        fuzz_require(HEADER_BYTES + 4 * (count_params(c, false) + (size_t)stored_slopes) == size);
        std::vector<float> params(n);
        read_model_params(f, path.c_str(), c, stored_slopes, c.variant.act, params.data());
        for (float p : params) fuzz_require(std::isfinite(p));
        close_file(f);
    });
    return 0;
}
