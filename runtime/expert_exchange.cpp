#include "runtime/expert_exchange.h"

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

MpiExpertExchange::MpiExpertExchange(MPI_Comm ep_comm, int experts, Baton* baton, int delay_us,
                                     io::TraceRecorder* trace)
    : baton_(baton), delay_us_(delay_us), trace_(trace) {
  MPI_Comm dup;
  MPI_CHECK(MPI_Comm_dup(ep_comm, &dup));
  comm_ = Comm(dup);
  size_ = comm_.size(), rank_ = comm_.rank();
  local_experts_ = experts / size_;
}

template <class F>
void MpiExpertExchange::collective(const char* name, bool delayed, F&& f) {
  const auto t0 = Clock::now();
  {
    BatonRelease handover(baton_);  // destroyed last: the event ends before the baton returns
    io::TraceScope event(trace_, io::TraceCategory::All2all, name, t_trace_tid);
    if (delayed) wait_latency(baton_, std::chrono::microseconds(delay_us_));  // modelled latency
    MPI_Request r = f();
    wait_requests(baton_, 1, &r);
  }
  seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
  if (delayed) ++collectives_;
}

void MpiExpertExchange::plan(model::ExpertPlan& p, const int32_t* rows_per_expert, int experts) {
  const int El = local_experts_;
  p.send_counts.assign(size_, 0);
  for (int e = 0; e < experts; ++e) p.send_counts[e / El] += rows_per_expert[e];
  p.recv_expert_counts.assign((size_t)size_ * El, 0);
  // Rank q gets the counts of its experts [q·El, (q+1)·El) from every rank.
  collective("all-to-all counts", false, [&] {
    MPI_Request r;
    MPI_CHECK(MPI_Ialltoall(rows_per_expert, El, MPI_INT32_T, p.recv_expert_counts.data(), El, MPI_INT32_T, comm_.get(), &r));
    return r;
  });
  p.recv_counts.assign(size_, 0);
  p.local_counts.assign(El, 0);
  for (int src = 0; src < size_; ++src)
    for (int l = 0; l < El; ++l) {
      p.recv_counts[src] += p.recv_expert_counts[(size_t)src * El + l];
      p.local_counts[l] += p.recv_expert_counts[(size_t)src * El + l];
    }
}

void MpiExpertExchange::dispatch(const model::ExpertPlan& p, const float* in, std::vector<float>& out, int width) {
  const int El = local_experts_;
  scaled(p.send_counts, width, counts_a_, displs_a_);
  scaled(p.recv_counts, width, counts_b_, displs_b_);
  staging_.resize((size_t)p.owner_rows() * width);
  collective("all-to-all dispatch", true, [&] {
    MPI_Request r;
    MPI_CHECK(MPI_Ialltoallv(in, counts_a_.data(), displs_a_.data(), MPI_FLOAT, staging_.data(), counts_b_.data(),
                             displs_b_.data(), MPI_FLOAT, comm_.get(), &r));
    return r;
  });
  // Staging is source-major (each source's rows grouped by local expert); make it expert-major.
  out.resize(staging_.size());
  size_t dst = 0;
  for (int l = 0; l < El; ++l)
    for (int src = 0; src < size_; ++src) {
      size_t off = displs_b_[src];
      for (int k = 0; k < l; ++k) off += (size_t)p.recv_expert_counts[(size_t)src * El + k] * width;
      const size_t n = (size_t)p.recv_expert_counts[(size_t)src * El + l] * width;
      std::memcpy(out.data() + dst, staging_.data() + off, n * sizeof(float));
      dst += n;
    }
}

void MpiExpertExchange::combine(const model::ExpertPlan& p, const float* in, std::vector<float>& out, int width) {
  const int El = local_experts_;
  scaled(p.recv_counts, width, counts_b_, displs_b_);
  scaled(p.send_counts, width, counts_a_, displs_a_);
  staging_.resize((size_t)p.owner_rows() * width);
  size_t src_off = 0;  // expert-major → source-major (the inverse of dispatch's reorder)
  for (int l = 0; l < El; ++l)
    for (int src = 0; src < size_; ++src) {
      size_t off = displs_b_[src];
      for (int k = 0; k < l; ++k) off += (size_t)p.recv_expert_counts[(size_t)src * El + k] * width;
      const size_t n = (size_t)p.recv_expert_counts[(size_t)src * El + l] * width;
      std::memcpy(staging_.data() + off, in + src_off, n * sizeof(float));
      src_off += n;
    }
  int total = 0;
  for (int c : counts_a_) total += c;
  out.resize(total);
  collective("all-to-all combine", true, [&] {
    MPI_Request r;
    MPI_CHECK(MPI_Ialltoallv(staging_.data(), counts_b_.data(), displs_b_.data(), MPI_FLOAT, out.data(),
                             counts_a_.data(), displs_a_.data(), MPI_FLOAT, comm_.get(), &r));
    return r;
  });
}

}  // namespace duet::runtime
