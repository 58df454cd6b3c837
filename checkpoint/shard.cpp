// One rank's shard file: its tensor slices and its ShardState, and reading them back.
//
// shard-RRRRR.h5
//   attributes   duet_format = "duet-checkpoint-shard", format_version = 1, rank, step
//   /<tensor>    float32 [slice shape], chunked (~4 MiB chunks) with the Fletcher32 filter;
//                attributes global_shape, offset (int64). Chunks are checksummed here and
//                written with H5Dwrite_chunk: the same bytes HDF5's filter would store, at
//                memory speed instead of HDF5's ~1 GB/s filter pipeline.
//   /_duet       attributes step, rank, data_position; dataset rng_state (uint8 [n]);
//   /_duet/attributes   one string attribute per ShardState::attributes entry
#include <algorithm>
#include <bit>
#include <cstring>
#include <set>
#include <stdexcept>

#include "checkpoint/hash.h"
#include "checkpoint/internal.h"

namespace duet::ckpt::detail {
namespace {

constexpr std::int64_t kChunkElements = (4 << 20) / sizeof(float);  // 4 MiB chunks

// Chunk dims for a float32 slice: whole trailing dimensions while they fit in kChunkElements,
// then as many rows of the next dimension as fit. One chunk is the unit of Fletcher32
// checking and of partial reads.
std::vector<hsize_t> chunk_dims(std::span<const std::int64_t> shape) {
  std::vector<hsize_t> chunk(shape.size(), 1);
  std::int64_t inner = 1;
  for (std::size_t d = shape.size(); d-- > 0;) {
    const std::int64_t room = std::max<std::int64_t>(1, kChunkElements / inner);
    chunk[d] = static_cast<hsize_t>(std::clamp<std::int64_t>(std::min(shape[d], room), 1, shape[d]));
    inner *= static_cast<std::int64_t>(chunk[d]);
  }
  return chunk;
}

h5::Id link_creation() {
  h5::Id lcpl = h5::create_plist(H5P_LINK_CREATE);
  h5::check(H5Pset_create_intermediate_group(lcpl.get(), 1), "H5Pset_create_intermediate_group");
  return lcpl;
}

static_assert(std::endian::native == std::endian::little, "chunks are written raw as little-endian float32");

// Every chunk of slice `s`: copied into a chunk-shaped buffer (edge chunks zero-padded, as
// HDF5 stores whole chunks), Fletcher32 appended little-endian, written raw.
void write_chunks(hid_t dset, const TensorSlice& s, std::span<const hsize_t> chunk, const std::string& where) {
  const std::size_t nd = s.shape.size();
  std::vector<std::int64_t> cdims(chunk.begin(), chunk.end()), origin(nd, 0), at(nd, 0), count(nd);
  const std::size_t chunk_bytes = static_cast<std::size_t>(element_count(cdims)) * sizeof(float);
  std::vector<float> buf((chunk_bytes + sizeof(std::uint32_t)) / sizeof(float));
  std::vector<hsize_t> hat(nd);
  for (;;) {
    bool edge = false;
    for (std::size_t d = 0; d < nd; ++d) {
      count[d] = std::min(cdims[d], s.shape[d] - at[d]);
      edge = edge || count[d] != cdims[d];
      hat[d] = static_cast<hsize_t>(at[d]);
    }
    if (edge) std::fill(buf.begin(), buf.end(), 0.f);
    copy_box(s.data.data(), s.shape, at, buf.data(), cdims, origin, count);
    const std::uint32_t sum = fletcher32(buf.data(), chunk_bytes);
    std::memcpy(reinterpret_cast<char*>(buf.data()) + chunk_bytes, &sum, sizeof sum);
    h5::check(H5Dwrite_chunk(dset, H5P_DEFAULT, 0, hat.data(), chunk_bytes + sizeof sum, buf.data()),
              "cannot write " + where);
    std::size_t d = nd;  // next chunk, last dimension fastest
    while (d-- > 0) {
      at[d] += cdims[d];
      if (at[d] < s.shape[d]) break;
      at[d] = 0;
    }
    if (d == static_cast<std::size_t>(-1)) return;
  }
}

void write_slice(hid_t file, hid_t lcpl, const TensorSlice& s) {
  const std::string where = "tensor '" + s.name + "'";
  h5::Id space = h5::simple_space(s.shape);
  h5::Id dcpl = h5::create_plist(H5P_DATASET_CREATE);
  h5::check(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), "H5Pset_fill_time");
  const bool chunked = element_count(s.shape) > 0;  // chunk dims must be >= 1 and fit the dataset
  std::vector<hsize_t> chunk;
  if (chunked) {
    chunk = chunk_dims(s.shape);
    h5::check(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), "H5Pset_chunk");
    h5::check(H5Pset_fletcher32(dcpl.get()), "H5Pset_fletcher32");
  }
  h5::Id dset = h5::checked(
      H5Dcreate2(file, dataset_path(s.name).c_str(), H5T_IEEE_F32LE, space.get(), lcpl, dcpl.get(), H5P_DEFAULT),
      H5Dclose, "cannot create dataset for " + where);
  if (chunked) write_chunks(dset.get(), s, chunk, where);
  h5::write_attr(dset.get(), "global_shape", s.global_shape);
  h5::write_attr(dset.get(), "offset", s.offset);
}

void write_state(hid_t file, int rank, std::int64_t step, const ShardState& state) {
  h5::Id group = h5::checked(H5Gcreate2(file, kStateGroup, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose,
                             "cannot create group /_duet");
  h5::write_attr(group.get(), "step", step);
  h5::write_attr(group.get(), "rank", std::int64_t{rank});
  h5::write_attr(group.get(), "data_position", state.data_position);
  const std::int64_t n = static_cast<std::int64_t>(state.rng_state.size());
  h5::Id space = h5::simple_space(std::span<const std::int64_t>(&n, 1));
  h5::Id rng = h5::checked(H5Dcreate2(group.get(), "rng_state", H5T_STD_U8LE, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                                      H5P_DEFAULT),
                           H5Dclose, "cannot create /_duet/rng_state");
  if (n) h5::check(H5Dwrite(rng.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, state.rng_state.data()),
                   "cannot write /_duet/rng_state");
  h5::Id attrs = h5::checked(H5Gcreate2(group.get(), "attributes", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose,
                             "cannot create group /_duet/attributes");
  for (const auto& [key, value] : state.attributes) {
    if (key.empty() || key.size() > 255 || key.find('\0') != std::string::npos)
      throw std::invalid_argument("ShardState attribute name '" + key + "' must be 1-255 characters without NUL");
    if (value.size() > 60000 || value.find('\0') != std::string::npos)
      throw std::invalid_argument("ShardState attribute '" + key + "': value must be text under 60000 bytes");
    h5::write_attr(attrs.get(), key.c_str(), value);
  }
}

herr_t collect_attr_name(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}

}  // namespace

void copy_box(const float* src, std::span<const std::int64_t> src_shape, std::span<const std::int64_t> src_off,
              float* dst, std::span<const std::int64_t> dst_shape, std::span<const std::int64_t> dst_off,
              std::span<const std::int64_t> count) {
  const std::size_t nd = count.size();
  if (nd == 0 || element_count(count) == 0) return;
  // Trailing dimensions covered whole in both arrays merge into one contiguous run.
  std::size_t k = nd - 1;
  std::int64_t run = count[k];
  while (k > 0 && count[k] == src_shape[k] && count[k] == dst_shape[k]) run *= count[--k];
  std::vector<std::int64_t> src_stride(nd, 1), dst_stride(nd, 1), idx(k, 0);
  for (std::size_t d = nd - 1; d-- > 0;) {
    src_stride[d] = src_stride[d + 1] * src_shape[d + 1];
    dst_stride[d] = dst_stride[d + 1] * dst_shape[d + 1];
  }
  std::int64_t src_base = 0, dst_base = 0;
  for (std::size_t d = 0; d < nd; ++d) src_base += src_off[d] * src_stride[d], dst_base += dst_off[d] * dst_stride[d];
  for (;;) {
    std::int64_t so = src_base, dof = dst_base;
    for (std::size_t d = 0; d < k; ++d) so += idx[d] * src_stride[d], dof += idx[d] * dst_stride[d];
    std::memcpy(dst + dof, src + so, static_cast<std::size_t>(run) * sizeof(float));
    std::size_t d = k;  // odometer over the outer dimensions [0, k)
    while (d-- > 0) {
      if (++idx[d] < count[d]) break;
      idx[d] = 0;
    }
    if (d == static_cast<std::size_t>(-1)) return;
  }
}

std::string dataset_path(std::string_view tensor) {
  std::string p(1, '/');
  p.append(tensor);
  return p;
}

void validate_slices(std::span<const TensorSlice> slices) {
  std::set<std::string_view> names;
  std::set<std::string> groups;
  for (const TensorSlice& s : slices) {
    validate_tensor_name(s.name);
    const std::string where = "tensor '" + s.name + "': ";
    if (!names.insert(s.name).second) throw std::invalid_argument(where + "two slices in one rank's shard (one per tensor)");
    if (s.global_shape.empty()) throw std::invalid_argument(where + "needs at least one dimension (save a scalar as shape {1})");
    if (s.offset.size() != s.global_shape.size() || s.shape.size() != s.global_shape.size())
      throw std::invalid_argument(where + "global_shape " + format_shape(s.global_shape) + ", offset " +
                                  format_shape(s.offset) + " and shape " + format_shape(s.shape) + " differ in rank");
    element_count(s.global_shape);  // throws on negative dims or overflow
    for (std::size_t d = 0; d < s.shape.size(); ++d)
      if (s.offset[d] < 0 || s.shape[d] < 0 || s.offset[d] > s.global_shape[d] || s.shape[d] > s.global_shape[d] - s.offset[d])
        throw std::invalid_argument(where + "slice at " + format_shape(s.offset) + " of shape " + format_shape(s.shape) +
                                    " does not fit in " + format_shape(s.global_shape));
    if (static_cast<std::int64_t>(s.data.size()) != element_count(s.shape))
      throw std::invalid_argument(where + "data has " + std::to_string(s.data.size()) + " values, shape " +
                                  format_shape(s.shape) + " needs " + std::to_string(element_count(s.shape)));
    for (std::size_t p = s.name.find('/'); p != std::string::npos; p = s.name.find('/', p + 1)) groups.insert(s.name.substr(0, p));
  }
  for (const auto& g : groups)
    if (names.count(g)) throw std::invalid_argument("tensor '" + g + "' is also a group of other tensors ('" + g + "/…')");
}

void write_shard_file(const std::string& path, int rank, std::int64_t step, std::span<const TensorSlice> slices,
                      const ShardState& state, const std::function<void()>& before_close) {
  h5::Session session;
  h5::Id file = h5::create_file(path);
  h5::write_attr(file.get(), "duet_format", "duet-checkpoint-shard");
  h5::write_attr(file.get(), "format_version", std::int64_t{1});
  h5::write_attr(file.get(), "rank", std::int64_t{rank});
  h5::write_attr(file.get(), "step", step);
  h5::Id lcpl = link_creation();
  for (const TensorSlice& s : slices) write_slice(file.get(), lcpl.get(), s);
  write_state(file.get(), rank, step, state);
  if (before_close) before_close();
  // Closing flushes the metadata: a full disk often shows up only here.
  h5::check(file.close(), "cannot close (flush) '" + path + "'");
}

ShardState read_shard_state(hid_t file, const std::string& path) {
  h5::Session session;
  ShardState st;
  h5::Id group = h5::checked(H5Gopen2(file, kStateGroup, H5P_DEFAULT), H5Gclose, path + ": no /_duet group (not a duet shard?)");
  const auto pos = h5::read_attr_ints(group.get(), "data_position");
  if (pos.size() != 1) throw std::runtime_error(path + ": /_duet data_position is not a single integer");
  st.data_position = pos[0];
  h5::Id rng = h5::checked(H5Dopen2(group.get(), "rng_state", H5P_DEFAULT), H5Dclose, path + ": missing /_duet/rng_state");
  h5::Id space = h5::checked(H5Dget_space(rng.get()), H5Sclose, "H5Dget_space");
  const hssize_t n = h5::check(H5Sget_simple_extent_npoints(space.get()), "H5Sget_simple_extent_npoints");
  st.rng_state.resize(static_cast<std::size_t>(n));
  if (n) h5::check(H5Dread(rng.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, st.rng_state.data()),
                   path + ": cannot read /_duet/rng_state");
  h5::Id attrs = h5::checked(H5Gopen2(group.get(), "attributes", H5P_DEFAULT), H5Gclose, path + ": missing /_duet/attributes");
  std::vector<std::string> names;
  hsize_t idx = 0;
  h5::check(H5Aiterate2(attrs.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr_name, &names),
            path + ": cannot list /_duet/attributes");
  for (const auto& name : names) st.attributes[name] = h5::read_attr_string(attrs.get(), name.c_str());
  return st;
}

h5::Id open_slice_dataset(hid_t file, const std::string& file_path, const SliceRecord& slice, const TensorInfo& tensor) {
  h5::Session session;
  const std::string where = file_path + ": tensor '" + slice.tensor + "'";
  h5::Id dset = h5::checked(H5Dopen2(file, dataset_path(slice.tensor).c_str(), H5P_DEFAULT), H5Dclose,
                            where + ": dataset missing");
  h5::Id space = h5::checked(H5Dget_space(dset.get()), H5Sclose, "H5Dget_space");
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(rank > 0 ? static_cast<std::size_t>(rank) : 0);
  if (rank < 0 || (rank > 0 && H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0) ||
      !std::equal(dims.begin(), dims.end(), slice.shape.begin(), slice.shape.end(),
                  [](hsize_t a, std::int64_t b) { return static_cast<std::int64_t>(a) == b; }))
    throw std::runtime_error(where + ": dataset shape does not match the manifest's " + format_shape(slice.shape));
  if (h5::read_attr_ints(dset.get(), "offset") != slice.offset ||
      h5::read_attr_ints(dset.get(), "global_shape") != tensor.shape)
    throw std::runtime_error(where + ": offset/global_shape attributes do not match the manifest (" +
                             format_shape(slice.offset) + " of " + format_shape(tensor.shape) + ")");
  h5::Id type = h5::checked(H5Dget_type(dset.get()), H5Tclose, "H5Dget_type");
  if (H5Tget_class(type.get()) != H5T_FLOAT || H5Tget_size(type.get()) != 4)
    throw std::runtime_error(where + ": dataset is not float32");
  return dset;
}

namespace {

// The chunk dims of a dataset whose only filter is Fletcher32 (what write_chunks writes), or
// empty for anything else.
std::vector<std::int64_t> fletcher_chunk_dims(hid_t dset, std::size_t nd) {
  h5::Id dcpl = h5::checked(H5Dget_create_plist(dset), H5Pclose, "H5Dget_create_plist");
  if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED || H5Pget_nfilters(dcpl.get()) != 1) return {};
  unsigned flags = 0, cd[4];
  size_t ncd = 4;
  if (H5Pget_filter2(dcpl.get(), 0, &flags, &ncd, cd, 0, nullptr, nullptr) != H5Z_FILTER_FLETCHER32) return {};
  std::vector<hsize_t> dims(nd);
  if (H5Pget_chunk(dcpl.get(), static_cast<int>(nd), dims.data()) != static_cast<int>(nd)) return {};
  return {dims.begin(), dims.end()};
}

}  // namespace

void read_slice_part(hid_t dset, const SliceRecord& slice, std::span<const std::int64_t> offset,
                     std::span<const std::int64_t> shape, std::span<float> out, const std::string& context) {
  const std::size_t nd = shape.size();
  std::vector<std::int64_t> lo(nd), hi(nd);  // the intersection, in slice coordinates
  for (std::size_t d = 0; d < nd; ++d) {
    lo[d] = std::max(offset[d], slice.offset[d]) - slice.offset[d];
    hi[d] = std::min(offset[d] + shape[d], slice.offset[d] + slice.shape[d]) - slice.offset[d];
    if (lo[d] >= hi[d]) return;
  }
  h5::Session session;
  const std::vector<std::int64_t> cdims = fletcher_chunk_dims(dset, nd);
  if (cdims.empty())
    throw std::runtime_error(context + ": the dataset is not chunked with Fletcher32 alone, as duet writes it");
  // Raw chunks, checked here with the fast Fletcher32 (HDF5's check runs at ~2 GB/s and its
  // filter path copies once more), then the wanted part copied out.
  const std::size_t chunk_bytes = static_cast<std::size_t>(element_count(cdims)) * sizeof(float);
  std::vector<float> buf((chunk_bytes + sizeof(std::uint32_t)) / sizeof(float));
  std::vector<std::int64_t> first(nd), at(nd), src_off(nd), dst_off(nd), count(nd);
  std::vector<hsize_t> hat(nd);
  for (std::size_t d = 0; d < nd; ++d) first[d] = at[d] = lo[d] / cdims[d] * cdims[d];
  for (;;) {
    for (std::size_t d = 0; d < nd; ++d) {
      const std::int64_t b = std::max(lo[d], at[d]), e = std::min(hi[d], at[d] + cdims[d]);
      src_off[d] = b - at[d];
      dst_off[d] = b + slice.offset[d] - offset[d];
      count[d] = e - b;
      hat[d] = static_cast<hsize_t>(at[d]);
    }
    hsize_t stored = 0;
    std::uint32_t filter_mask = 0;
    h5::check(H5Dget_chunk_storage_size(dset, hat.data(), &stored), context);
    if (stored != chunk_bytes + sizeof(std::uint32_t))
      throw std::runtime_error(context + ": chunk at " + format_shape(at) + " is " + std::to_string(stored) +
                               " bytes, expected " + std::to_string(chunk_bytes + sizeof(std::uint32_t)));
    h5::check(H5Dread_chunk(dset, H5P_DEFAULT, hat.data(), &filter_mask, buf.data()), context);
    std::uint32_t want;
    std::memcpy(&want, reinterpret_cast<const char*>(buf.data()) + chunk_bytes, sizeof want);
    const std::uint32_t got = fletcher32(buf.data(), chunk_bytes);
    if (filter_mask != 0 || got != want)
      throw std::runtime_error(context + ": data error detected by Fletcher32 checksum in the chunk at " +
                               format_shape(at) + " (stored " + format_hex64(want).substr(8) + ", computed " +
                               format_hex64(got).substr(8) + ")");
    copy_box(buf.data(), cdims, src_off, out.data(), shape, dst_off, count);
    std::size_t d = nd;  // next chunk touching the intersection, last dimension fastest
    while (d-- > 0) {
      at[d] += cdims[d];
      if (at[d] < hi[d]) break;
      at[d] = first[d];
    }
    if (d == static_cast<std::size_t>(-1)) return;
  }
}

}  // namespace duet::ckpt::detail
