// fuzz/fuzz_debug_state.cpp: test_gpt2's reader of the PyTorch reference's debug states
// (debug_state.h: read_debug_state) for a model of L1 NH2 C8 maxT 16 V 64 (Vp 128, 1 slope).
// Seeds: fuzz/corpus/debug_state.
#include "fuzz_util.h"
#include "../debug_state.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = fuzz_scratch_path("debug_state.bin");
    fuzz_write_file(path, data, size);
    GPT2Config c = {16, 64, 128, 1, 2, 8, {NORM_NONE, ACT_LRELU_GLOBAL, 0.1f}};
    size_t n = count_params(c, true);
    fuzz_run([&] {
        DebugState s;
        read_debug_state(path.c_str(), c, n, &s);
        fuzz_require(s.x.size() == (size_t)s.B * s.T && s.grads.size() == n && s.T <= c.max_seq_len);
    });
    return 0;
}
