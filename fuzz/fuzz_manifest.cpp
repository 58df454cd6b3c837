// libFuzzer target for the readers of checkpoint files that may be damaged or hostile.
//
// Built twice from this file (fuzz/CMakeLists.txt):
//   fuzz_manifest   manifest.json and the per-shard sidecars (checkpoint/json.cpp and
//                   checkpoint/manifest.cpp: the parser, every validation rule, and the
//                   property that whatever parses writes back to the same manifest)
//   fuzz_index      index.h5 as bytes (read_index_image: HDF5 opens the file image, lists the
//                   datasets and their virtual-dataset mappings)
// Any exception is a rejected input, which is fine; a crash, a sanitizer report, a hang or a
// round trip that changes the manifest is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <span>
#include <string_view>

#include "checkpoint/checkpoint.h"
#include "checkpoint/manifest.h"

using namespace duet::ckpt;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
#if defined(DUET_FUZZ_INDEX)
  try {
    for (const IndexEntry& e : read_index_image(std::span(data, size))) {
      (void)e.name.size();
      (void)e.sources.size();
    }
  } catch (const std::exception&) {
  }
#else
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const Manifest m = parse_manifest(text, "fuzz/manifest.json");
    if (!(parse_manifest(manifest_to_json(m), "fuzz/again.json") == m)) std::abort();  // must round trip
  } catch (const std::exception&) {
  }
  try {
    const ShardSidecar s = parse_sidecar(text, "fuzz/shard-00000.json");
    if (!(parse_sidecar(sidecar_to_json(s), "fuzz/again.json") == s)) std::abort();
  } catch (const std::exception&) {
  }
#endif
  return 0;
}
