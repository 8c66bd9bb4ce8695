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

}  // namespace tb

#endif  // VITACCEL_TB_GOLDEN_H
