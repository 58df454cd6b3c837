// runtime.data_plane (runtime/train_setup.h): what nccl needs, said as a config error, and
// how each local rank binds its own GPU.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "io/config.h"
#include "runtime/comm_nccl.h"
#include "runtime/train_setup.h"

using namespace duet::runtime;

// One GPU per rank: the launcher's local rank picks the GPU from CUDA_VISIBLE_DEVICES (or is
// the GPU when that is unset); a process bound to one GPU already is left alone.
TEST(DataPlane, EachLocalRankBindsItsOwnGpu) {
  struct Env {  // restores a variable as it was
    std::string name;
    std::optional<std::string> was;
    explicit Env(std::string n) : name(std::move(n)) {
      if (const char* v = std::getenv(name.c_str())) was = v;
    }
    ~Env() { was ? setenv(name.c_str(), was->c_str(), 1) : unsetenv(name.c_str()); }
  } visible("CUDA_VISIBLE_DEVICES"), local("OMPI_COMM_WORLD_LOCAL_RANK");
  duet::io::RunConfig cfg = duet::io::parse_config(duet::io::default_config_text(), {}, "<test>");
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
  setenv("CUDA_VISIBLE_DEVICES", "4,5,6", 1);
  EXPECT_EQ(bind_local_gpu(cfg), "");  // runtime.data_plane: mpi
  EXPECT_STREQ(std::getenv("CUDA_VISIBLE_DEVICES"), "4,5,6");
  cfg.runtime.data_plane = duet::io::DataPlane::Nccl;
  EXPECT_NE(bind_local_gpu(cfg).find("local rank 1 uses GPU 5"), std::string::npos);
  EXPECT_STREQ(std::getenv("CUDA_VISIBLE_DEVICES"), "5");
  EXPECT_EQ(bind_local_gpu(cfg), "");  // bound already
  unsetenv("CUDA_VISIBLE_DEVICES");
  bind_local_gpu(cfg);
  EXPECT_STREQ(std::getenv("CUDA_VISIBLE_DEVICES"), "1");
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3", 1);  // a fourth rank on a node of three GPUs
  setenv("CUDA_VISIBLE_DEVICES", "0,1,2", 1);
  try {
    bind_local_gpu(cfg);
    ADD_FAILURE() << "two ranks were given one GPU";
  } catch (const duet::io::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("local rank 3 has none: CUDA_VISIBLE_DEVICES lists 3"), std::string::npos)
        << e.what();
  }
}

TEST(DataPlane, NcclNamesWhatItNeeds) {
  duet::io::RunConfig cfg = duet::io::parse_config(duet::io::default_config_text(), {}, "<test>");
  EXPECT_FALSE(data_plane_for(cfg));  // mpi: the pipeline group itself
  cfg.runtime.data_plane = duet::io::DataPlane::Nccl;
  try {
    data_plane_for(cfg);
    ADD_FAILURE() << "nccl with runtime.device: cpu was accepted";
  } catch (const duet::io::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("needs runtime.device: cuda; allowed: mpi, nccl"), std::string::npos) << e.what();
  }
  cfg.runtime.device = duet::io::Device::Cuda;
  if (nccl_absent_reason().empty()) {
    EXPECT_TRUE(data_plane_for(cfg));
  } else {
    EXPECT_THROW(data_plane_for(cfg), duet::io::ConfigError);
  }
}
