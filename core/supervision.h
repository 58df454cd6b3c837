#pragma once
// The wire protocol between a job's ranks and its supervisor: one text line per message
// over a TCP connection each rank opens to the address the supervisor put in its environment
// (DUET_SUPERVISOR=host:port). TCP, not a file on a shared disk: it works across nodes, and
// a rank's death closes its connection at once, so the supervisor learns of it within
// milliseconds even when the launcher takes a second to notice.
//
//   rank → supervisor:   hello <rank> <pid> <attempt> <host> [<node>]   (node: logical, on one machine)
//                        beat <step> <op> <setup|step|save>
//                        steptime <step> <seconds>
//                        committed <step>
//                        nonfinite <step> [<rank> <dir> <mb>]   (where: the first micro-batch whose loss was not finite)
//                        mark <name> <seconds> <step>   (a start-up milestone: age, mpi_init, load, eval)
//                        inject <signal> <step>         (fault injection strikes now: its time is the fault's)
//                        stacksdone      (its threads' stacks are written, after "stacks")
//                        done            (it finished its part: the connection closing next is no death)
//   supervisor → rank:   stop            (stop at the next step boundary, with a checkpoint)
//                        stacks <dir>    (write every thread's stack into <dir>/rank-<r>.stacks.txt)
//                        nostacks        (the supervisor stopped waiting: a request not yet handled is void)

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace duet::core {

constexpr const char* kSupervisorEnv = "DUET_SUPERVISOR";  // host:port of the supervisor
constexpr const char* kAttemptEnv = "DUET_ATTEMPT";        // the attempt number, 1-based
// The attempt's fence generation (checkpoint/fence.h), handed out by the supervisor; a run
// without one advances the fence itself.
constexpr const char* kFenceEnv = "DUET_FENCE";
// Logical nodes on one machine (launch.ranks_per_node): the attempt's nodes in order,
// "node0,node2", and the ranks per node; rank r is on node (r / ranks per node).
constexpr const char* kNodesEnv = "DUET_NODES";
constexpr const char* kRanksPerNodeEnv = "DUET_RANKS_PER_NODE";
// This rank's logical node from those variables; "" when they are not set.
std::string logical_node_of(int rank);
// Steps whose data the job skips (they produced a non-finite value): "7,19". Step s then
// trains on the data of step s + (skipped steps <= s), so each skip shifts the rest by one.
constexpr const char* kSkipStepsEnv = "DUET_SKIP_STEPS";
std::vector<int> parse_step_list(std::string_view text);  // "7,19" → {7, 19}; bad entries dropped
std::string format_step_list(const std::vector<int>& steps);
// The data step that training step `step` uses, given the skipped steps.
int data_step(int step, const std::vector<int>& skipped);

struct RankMessage {
  enum class Kind { Hello, Beat, StepTime, Committed, NonFinite, Mark, Inject, StacksDone, Done };
  Kind kind = Kind::Beat;
  int rank = -1, pid = 0, attempt = 0;  // hello
  std::string host;                     // hello
  std::string node;                     // hello: its logical node ("" = the host is the node)
  int step = -1, op = -1;               // beat, steptime, committed, nonfinite
  enum class Phase { Setup, Step, Save } phase = Phase::Step;  // beat
  double seconds = 0;                   // steptime, mark
  std::string name;                     // mark: [a-z_]+
  int signal = 0;                       // inject
  int at_rank = -1, dir = -1, mb = -1;  // nonfinite: where, when known
};

// What a process has spent on start-up, for the supervisor's recovery breakdown: the seconds
// since it started (from /proc/self/stat), and the seconds MPI initialisation took (recorded
// by the bootstrap; 0 when it has not run).
double process_age_seconds();
void set_mpi_init_seconds(double seconds);
double mpi_init_seconds();

// Supervisor → rank: "stop\n", or "stacks <dir>\n". A dir with white space or control
// characters cannot be sent (returns "").
std::string encode_stacks_request(const std::string& dir);
// The directory of a "stacks <dir>" line (without its newline); nullopt for anything else.
std::optional<std::string> decode_stacks_request(std::string_view line);

// One line, newline included.
std::string encode(const RankMessage& m);
// One line without its newline; nullopt when it is not a valid message (a hostile or
// garbled line is dropped, never trusted).
std::optional<RankMessage> decode_rank_message(std::string_view line);

}  // namespace duet::core
