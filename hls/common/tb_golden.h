// Golden-file reading shared by the kernel testbenches (*_tb.cpp). Testbench-only: never synthesised.
#ifndef VITACCEL_TB_GOLDEN_H
#define VITACCEL_TB_GOLDEN_H

#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

// ---- golden files (written by tests/test_csim_kernels.py from the simulator) ----------------------
// A case is a folder: params.txt ("name value" per line) and one raw little-endian .bin file per array.
namespace tb {

typedef std::map<std::string, long long> Params;

inline bool read_params(const std::string& dir, Params& p) {
    std::ifstream f((dir + "/params.txt").c_str());
    if (!f) {
        std::printf("ERROR: cannot open %s/params.txt\n", dir.c_str());
        return false;
    }
    std::string key;
    long long value;
    while (f >> key >> value) p[key] = value;
    return true;
}

inline bool param(const Params& p, const std::string& dir, const char* key, long long* out) {
    Params::const_iterator it = p.find(key);
    if (it == p.end()) {
        std::printf("ERROR: %s/params.txt has no '%s'\n", dir.c_str(), key);
        return false;
    }
    *out = it->second;
    return true;
}

// Reads exactly count elements of T; a file of another size is an error (a stale or truncated golden).
template <typename T>
bool read_array(const std::string& dir, const char* name, long long count, std::vector<T>& out) {
    const std::string path = dir + "/" + name;
    std::ifstream f(path.c_str(), std::ios::binary | std::ios::ate);
    if (!f) {
        std::printf("ERROR: cannot open %s\n", path.c_str());
        return false;
    }
    const long long bytes = static_cast<long long>(f.tellg());
    if (count < 0 || bytes != count * static_cast<long long>(sizeof(T))) {
        std::printf("ERROR: %s has %lld bytes, expected %lld (%lld elements of %d bytes)\n", path.c_str(), bytes,
                    count * static_cast<long long>(sizeof(T)), count, static_cast<int>(sizeof(T)));
        return false;
    }
    // One spare element so that .data() of an empty array is still a valid pointer.
    out.assign(static_cast<size_t>(count) + 1, T(0));
    f.seekg(0);
    if (count > 0 && !f.read(reinterpret_cast<char*>(out.data()), bytes)) {
        std::printf("ERROR: reading %s failed\n", path.c_str());
        return false;
    }
    return true;
}

// The testbenches' main: every case folder in turn, stopping at the first that does not pass (its exit
// status: 1 mismatch, 2 unreadable case); "PASS: n case(s)" when all did.
inline int run_cases(int argc, char** argv, int (*run_case)(const std::string&)) {
    if (argc < 2) {
        std::printf("usage: %s CASE_DIR [CASE_DIR ...]\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; ++i) {
        const int rc = run_case(argv[i]);
        if (rc != 0) return rc;
    }
    std::printf("PASS: %d case(s)\n", argc - 1);
    return 0;
}

}  // namespace tb

#endif  // VITACCEL_TB_GOLDEN_H
