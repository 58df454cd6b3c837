#include "runtime/term_stop.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

namespace duet::runtime {
namespace {

std::atomic<int> g_term{0};
static_assert(std::atomic<int>::is_always_lock_free, "set from a signal handler");
struct sigaction g_previous {};
std::mutex g_mu;  // g_installed, g_previous
int g_installed = 0;

void on_term(int) { g_term.store(1); }

}  // namespace

TermStop::TermStop() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_installed++ > 0) return;  // ranks as threads of one process (in-process tests) share it
  g_term.store(0);                 // a new training loop: nothing asked of it yet
  struct sigaction sa {};
  sa.sa_handler = on_term;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // MPI's and the file system's calls go on where they were
  sigaction(SIGTERM, &sa, &g_previous);
}

TermStop::~TermStop() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (--g_installed > 0) return;
  sigaction(SIGTERM, &g_previous, nullptr);
  g_term.store(0);  // what was asked of this loop is answered: a later one starts clean
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
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &term, nullptr);
  kill(getpid(), SIGTERM);
  // The default action ends the process before kill() returns to a thread that does not block
  // it; a process where every other thread blocks SIGTERM still ends here.
  _exit(128 + SIGTERM);
}

}  // namespace duet::runtime
