#include "runtime/term_stop.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace duet::runtime {
namespace {

std::atomic<int> g_term{0};       // SIGTERM arrived while a TermStop lived
std::atomic<int> g_installed{0};  // TermStops alive
static_assert(std::atomic<int>::is_always_lock_free, "read and set from a signal handler");
std::mutex g_mu;      // TermStop's first and last, routing
bool g_routed = false;  // this process has its SIGTERM thread

sigset_t term_set() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGTERM);
  return s;
}

// A request while a TermStop lives, else the default end. Async-signal-safe: the sigwait
// thread calls it, and so does the handler of a thread that does not block SIGTERM (one
// started before route_sigterm()).
void arrived(int = SIGTERM) {
  if (g_installed.load() > 0)
    g_term.store(1);
  else
    die_by_sigterm();
}

[[noreturn]] void take_sigterm() {
  const sigset_t s = term_set();
  for (;;) {
    int sig = 0;
    if (sigwait(&s, &sig) == 0 && sig == SIGTERM) arrived();
  }
}

}  // namespace

void route_sigterm() {
  static std::once_flag at_fork;
  std::call_once(at_fork, [] {
    // A child of fork() has only the thread that forked: no thread takes SIGTERM there, and a
    // blocked SIGTERM would outlive an exec. It unblocks it and routes again if it trains.
    pthread_atfork([] { g_mu.lock(); }, [] { g_mu.unlock(); },
                   [] {
                     g_mu.unlock();
                     if (!g_routed) return;
                     g_routed = false;
                     const sigset_t s = term_set();
                     pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
                   });
  });
  std::lock_guard<std::mutex> lock(g_mu);
  const sigset_t s = term_set();
  pthread_sigmask(SIG_BLOCK, &s, nullptr);  // this thread, and every thread it starts from now on
  if (g_routed) return;
  try {
    std::thread(take_sigterm).detach();
  } catch (...) {  // no thread to take it: SIGTERM stays as it was
    pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
    throw;
  }
  g_routed = true;
  struct sigaction sa {};
  sa.sa_handler = arrived;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // MPI's and the file system's calls go on where they were
  sigaction(SIGTERM, &sa, nullptr);
}

TermStop::TermStop() {
  route_sigterm();
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_installed.load() == 0) g_term.store(0);  // a new training loop: nothing asked of it yet
  g_installed.fetch_add(1);
}

TermStop::~TermStop() {
  std::lock_guard<std::mutex> lock(g_mu);
  // The last one gone: what was asked of this loop is answered, and SIGTERM ends the process.
  if (g_installed.fetch_sub(1) == 1) g_term.store(0);
}

bool TermStop::requested() { return g_term.load() != 0; }

bool launched_by_mpi_launcher() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr ||
         std::getenv("PMI_RANK") != nullptr;
}

void die_by_sigterm() {
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  const sigset_t s = term_set();
  pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
  // To this thread, the one that does not block it: the default action ends the process before
  // pthread_kill returns.
  pthread_kill(pthread_self(), SIGTERM);
  _exit(128 + SIGTERM);
}

}  // namespace duet::runtime
