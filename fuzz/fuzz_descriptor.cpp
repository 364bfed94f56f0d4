// fuzz/fuzz_descriptor.cpp: the strings that become numbers and models: -e descriptors
// (config.h: parse_descriptor, then the one validation every model passes), --act and --norm,
// and the strict number parsers every flag uses. Seeds: fuzz/corpus/descriptor.
#include <string>
#include "fuzz_util.h"
#include "../config.h"
#include "../model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string s((const char*)data, size);
    s = s.substr(0, s.find('\0'));  // a command-line argument ends at its first NUL
    const char* str = s.c_str();
    fuzz_run([&] {
        GPT2Config c;
        if (parse_descriptor(str, &c)) {
            validate_config_or_fail(c, str);
            size_t n = count_params(c, true);
            fuzz_require(n > 0 && c.channels % c.num_heads == 0 && c.padded_vocab_size % 128 == 0);
        }
    });
    int act, norm;
    float slope;
    if (parse_act(str, &act, &slope)) fuzz_require(act >= ACT_GELU && act <= ACT_IDENTITY && std::isfinite(slope));
    if (parse_norm(str, &norm)) fuzz_require(norm >= NORM_LN && norm <= NORM_NONE_ALL);
    // the number syntax is plain decimal: nothing that parses starts with a blank, '+' or "0x"
    long n;
    float x;
    bool lax_start = s.empty() || isspace((unsigned char)s[0]) || s[0] == '+' || s.find("0x") != std::string::npos ||
                     s.find("0X") != std::string::npos;
    if (parse_int(str, &n)) fuzz_require(!lax_start && std::to_string(n).size() <= s.size());
    if (parse_float(str, &x)) fuzz_require(!lax_start && std::isfinite(x));
    return 0;
}
