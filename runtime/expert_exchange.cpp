#include "runtime/expert_exchange.h"

#include "model/buffers.h"

#include <chrono>
#include <cstring>

namespace duet::runtime {

namespace {
using Clock = std::chrono::steady_clock;

void scaled(const std::vector<int32_t>& rows, int width, std::vector<int>& counts, std::vector<int>& displs) {
  counts.resize(rows.size()), displs.resize(rows.size());
  int off = 0;
  for (size_t i = 0; i < rows.size(); ++i) counts[i] = rows[i] * width, displs[i] = off, off += counts[i];
}
}  // namespace

CommExpertExchange::CommExpertExchange(Communicator& comm, int experts, Baton* baton, int delay_us,
                                       io::TraceRecorder* trace)
    : comm_(comm), baton_(baton), delay_us_(delay_us), trace_(trace) {
  size_ = comm_.size(), rank_ = comm_.rank();
  local_experts_ = experts / size_;
}

template <class Post, class Until>
void CommExpertExchange::collective(const char* name, bool delayed, Post&& post, Until&& until) {
  const auto t0 = Clock::now();
  {
    BatonRelease handover(baton_);  // destroyed last: the event ends before the baton returns
    io::TraceScope event(trace_, io::TraceCategory::All2all, name, t_trace_thread);
    Request r = post();
    wait_request(baton_, r);
    if (delayed && delay_us_ > 0) wait_until(baton_, until() + std::chrono::microseconds(delay_us_));
  }
  seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
  if (delayed) ++collectives_;
}

void CommExpertExchange::exchange_rows(const char* name, const float* send, float* recv) {
  if (delay_us_ <= 0) {
    collective(name, true, [&] {
      return comm_.ialltoallv(send, send_counts_.data(), send_displs_.data(), recv, recv_counts_.data(),
                              recv_displs_.data());
    }, [] { return Clock::time_point{}; });
    return;
  }
  // Modelled latency: every segment carries its send time, and the rows are usable
  // runtime.comm_delay_us after the latest segment was sent (see kStampFloats).
  auto stamped = [](const std::vector<int>& counts, std::vector<int>& c, std::vector<int>& d) {
    c.resize(counts.size()), d.resize(counts.size());
    int off = 0;
    for (size_t q = 0; q < counts.size(); ++q) c[q] = counts[q] + kStampFloats, d[q] = off, off += c[q];
    return off;
  };
  model::sized(stamped_send_, (size_t)stamped(send_counts_, stamped_send_counts_, stamped_send_displs_));
  model::sized(stamped_recv_, (size_t)stamped(recv_counts_, stamped_recv_counts_, stamped_recv_displs_));
  for (int q = 0; q < size_; ++q) {
    float* seg = stamped_send_.data() + stamped_send_displs_[q];
    std::memcpy(seg, send + send_displs_[q], sizeof(float) * send_counts_[q]);
    write_stamp(seg + send_counts_[q]);
  }
  collective(name, true, [&] {
    return comm_.ialltoallv(stamped_send_.data(), stamped_send_counts_.data(), stamped_send_displs_.data(),
                            stamped_recv_.data(), stamped_recv_counts_.data(), stamped_recv_displs_.data());
  }, [&] {
    Clock::time_point latest{};
    for (int q = 0; q < size_; ++q)
      latest = std::max(latest, read_stamp(stamped_recv_.data() + stamped_recv_displs_[q] + recv_counts_[q]));
    return latest;
  });
  for (int q = 0; q < size_; ++q)
    std::memcpy(recv + recv_displs_[q], stamped_recv_.data() + stamped_recv_displs_[q], sizeof(float) * recv_counts_[q]);
}

void CommExpertExchange::plan(model::ExpertPlan& p, const int32_t* rows_per_expert, int experts) {
  const int El = local_experts_;
  p.send_counts.assign(size_, 0);
  for (int e = 0; e < experts; ++e) p.send_counts[e / El] += rows_per_expert[e];
  p.recv_expert_counts.assign((size_t)size_ * El, 0);
  // Rank q gets the counts of its experts [q·El, (q+1)·El) from every rank.
  collective("all-to-all counts", false, [&] { return comm_.ialltoall(rows_per_expert, p.recv_expert_counts.data(), El); },
             [] { return Clock::time_point{}; });
  p.recv_counts.assign(size_, 0);
  p.local_counts.assign(El, 0);
  for (int src = 0; src < size_; ++src)
    for (int l = 0; l < El; ++l) {
      p.recv_counts[src] += p.recv_expert_counts[(size_t)src * El + l];
      p.local_counts[l] += p.recv_expert_counts[(size_t)src * El + l];
    }
}

void CommExpertExchange::dispatch(const model::ExpertPlan& p, const float* in, kernels::Buffer<float>& out, int width) {
  const int El = local_experts_;
  scaled(p.send_counts, width, send_counts_, send_displs_);
  scaled(p.recv_counts, width, recv_counts_, recv_displs_);
  model::sized(staging_, (size_t)p.owner_rows() * width);
  exchange_rows("all-to-all dispatch", in, staging_.data());
  // Staging is source-major (each source's rows grouped by local expert); make it expert-major.
  model::sized(out, staging_.size());
  size_t dst = 0;
  for (int l = 0; l < El; ++l)
    for (int src = 0; src < size_; ++src) {
      size_t off = recv_displs_[src];
      for (int k = 0; k < l; ++k) off += (size_t)p.recv_expert_counts[(size_t)src * El + k] * width;
      const size_t n = (size_t)p.recv_expert_counts[(size_t)src * El + l] * width;
      std::memcpy(out.data() + dst, staging_.data() + off, n * sizeof(float));
      dst += n;
    }
}

void CommExpertExchange::combine(const model::ExpertPlan& p, const float* in, kernels::Buffer<float>& out, int width) {
  const int El = local_experts_;
  // The reverse of dispatch: owner rows go back to the ranks that routed them.
  scaled(p.recv_counts, width, send_counts_, send_displs_);
  scaled(p.send_counts, width, recv_counts_, recv_displs_);
  model::sized(staging_, (size_t)p.owner_rows() * width);
  size_t src_off = 0;  // expert-major → source-major (the inverse of dispatch's reorder)
  for (int l = 0; l < El; ++l)
    for (int src = 0; src < size_; ++src) {
      size_t off = send_displs_[src];
      for (int k = 0; k < l; ++k) off += (size_t)p.recv_expert_counts[(size_t)src * El + k] * width;
      const size_t n = (size_t)p.recv_expert_counts[(size_t)src * El + l] * width;
      std::memcpy(staging_.data() + off, in + src_off, n * sizeof(float));
      src_off += n;
    }
  int total = 0;
  for (int c : recv_counts_) total += c;
  model::sized(out, (size_t)total);
  exchange_rows("all-to-all combine", staging_.data(), out.data());
}

}  // namespace duet::runtime
