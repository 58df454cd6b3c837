#pragma once
// Device timing of the CUDA backend's ops (kernels::Backend::timing_begin / timing_end): while
// a host thread has timing on, every op of the table is bracketed by two CUDA events on the
// thread's stream (Timed<op>, around each slot in backend.cu); timing_end waits for the last
// one and reads the times back, placed on the host's steady clock through an anchor event.
#include "kernels/backend.h"

namespace duet::cuda {

bool timing_begin();  // false (and nothing changes) when the calling thread is timing already
bool timing_end(kernels::DeviceSpan* span);
bool timing_on();        // the calling thread's
void timing_op_start();  // records an op's start event
void timing_op_end();    // records its end event

// An op of the table, timed while the calling thread has timing on.
template <auto Fn>
struct Timed;
template <class R, class... A, R (*Fn)(A...)>
struct Timed<Fn> {
  static R call(A... a) {
    if (!timing_on()) return Fn(a...);
    struct End {
      ~End() { timing_op_end(); }
    };
    timing_op_start();
    End end;
    return Fn(a...);
  }
};

}  // namespace duet::cuda
