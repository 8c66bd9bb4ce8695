// A minimal hls::stream for g++ C-simulation only. Written for this project.
//
// Vitis HLS brings its own hls_stream.h, and synthesis must use that one: this folder is put on the include
// path by the C-simulation harness (vitaccel/sim/csim.py) and never by build.tcl. It models a stream as an
// unbounded FIFO, which is what Vitis C-simulation does too: depth only matters in co-simulation and in
// hardware, so a deadlock caused by a too-shallow FIFO is not found here.
#ifndef VITACCEL_CSIM_HLS_STREAM_H
#define VITACCEL_CSIM_HLS_STREAM_H

#ifdef __SYNTHESIS__
#error "hls/include/csim/hls_stream.h is for g++ C-simulation; synthesis must use the Vitis HLS hls_stream.h"
#endif

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>

namespace hls {

// DEPTH is accepted so that sources written as hls::stream<T, N> compile; it does not bound the FIFO.
template <typename T, int DEPTH = 0>
class stream {
  public:
    stream() : name_("hls::stream") {}
    explicit stream(const char* name) : name_(name ? name : "hls::stream") {}

    // Leftover data usually means a producer and a consumer disagree on a count, which in hardware shows
    // up as a hang on the next invocation; say so instead of silently dropping it.
    ~stream() {
        if (!fifo_.empty()) {
            std::fprintf(stderr, "WARNING: hls::stream '%s' destroyed with %zu unread element(s)\n",
                         name_.c_str(), fifo_.size());
        }
    }

    // A hardware FIFO cannot be duplicated; copying one here would hide a dataflow bug.
    stream(const stream&) = delete;
    stream& operator=(const stream&) = delete;

    bool empty() const { return fifo_.empty(); }
    // Unbounded in C-simulation, so a blocking write never has to wait.
    bool full() const { return false; }
    std::size_t size() const { return fifo_.size(); }

    // In hardware a read from an empty stream blocks forever; in a sequential C model it can never be
    // satisfied, so stop at the faulty read rather than returning garbage.
    T read() {
        if (fifo_.empty()) {
            std::fprintf(stderr, "ERROR: hls::stream '%s' read while empty (the hardware would hang here)\n",
                         name_.c_str());
            std::abort();
        }
        T v = fifo_.front();
        fifo_.pop_front();
        return v;
    }
    void read(T& v) { v = read(); }
    bool read_nb(T& v) {
        if (fifo_.empty()) return false;
        v = read();
        return true;
    }

    void write(const T& v) { fifo_.push_back(v); }
    bool write_nb(const T& v) {
        write(v);
        return true;
    }

    void operator>>(T& v) { read(v); }
    void operator<<(const T& v) { write(v); }

    const char* name() const { return name_.c_str(); }

  private:
    std::deque<T> fifo_;
    std::string name_;
};

}  // namespace hls

#endif  // VITACCEL_CSIM_HLS_STREAM_H
