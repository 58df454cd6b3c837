#pragma once
// Tests that need a thread confined to one CPU (the thread pool's and the FMA probe's).
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

namespace duet::test {

// Pins the calling thread to the first CPU this process may use (threads it starts inherit it).
inline void pin_to_first_cpu() {
  cpu_set_t allowed, one;
  ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  int first = 0;
  while (!CPU_ISSET(first, &allowed)) ++first;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof one, &one), 0);
}

}  // namespace duet::test
