// index.h5: every tensor whole, as an HDF5 virtual dataset over the shards' slices.
//
// Source file names are stored relative ("shard-00003.h5"), so the checkpoint directory can
// be moved or renamed (the commit renames it); readers here set the virtual prefix to the
// index's own directory. The fill value is NaN rather than 0: HDF5 answers reads of a missing
// source with the fill value, and NaN cannot pass for trained weights. read_tensor_via_index
// checks every source before reading, so a missing shard is an error, never a value.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <stdexcept>

#include "checkpoint/files.h"
#include "checkpoint/hash.h"
#include "checkpoint/internal.h"

namespace duet::ckpt {
namespace fs = std::filesystem;

namespace detail {
namespace {

std::vector<std::int64_t> dataset_shape(hid_t dset, const std::string& what) {
  h5::Id space = h5::checked(H5Dget_space(dset), H5Sclose, "H5Dget_space");
  const int nd = H5Sget_simple_extent_ndims(space.get());
  if (nd < 0 || nd > 32) throw std::runtime_error(what + ": bad dataspace");
  std::vector<hsize_t> dims(static_cast<std::size_t>(nd));
  if (nd) h5::check(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), what + ": bad dataspace");
  return {dims.begin(), dims.end()};
}

// The (file, dataset) mapped into each part of a virtual dataset, in mapping order; none for
// any other layout.
std::vector<std::pair<std::string, std::string>> virtual_sources(hid_t dcpl) {
  std::vector<std::pair<std::string, std::string>> out;
  if (H5Pget_layout(dcpl) != H5D_VIRTUAL) return out;
  size_t count = 0;
  h5::check(H5Pget_virtual_count(dcpl, &count), "H5Pget_virtual_count");
  for (size_t i = 0; i < count; ++i) {
    char file_name[4096] = "", dset_name[4096] = "";
    h5::check(H5Pget_virtual_filename(dcpl, i, file_name, sizeof file_name), "H5Pget_virtual_filename");
    h5::check(H5Pget_virtual_dsetname(dcpl, i, dset_name, sizeof dset_name), "H5Pget_virtual_dsetname");
    out.emplace_back(file_name, dset_name);
  }
  return out;
}

struct IterState {
  std::vector<std::string> names;  // datasets, as paths without the leading '/'
};

herr_t collect_dataset(hid_t, const char* name, const H5O_info_t* info, void* data) {
  if (info->type == H5O_TYPE_DATASET) static_cast<IterState*>(data)->names.push_back(name);
  return 0;
}

}  // namespace

void write_index_file(const std::string& path, const Manifest& m) {
  h5::Session session;
  h5::Id file = h5::create_file(path);
  h5::write_attr(file.get(), "duet_format", "duet-checkpoint-index");
  h5::write_attr(file.get(), "format_version", std::int64_t{1});
  h5::write_attr(file.get(), "step", m.step);
  h5::write_attr(file.get(), "world", std::int64_t{m.layout.world});
  h5::write_attr(file.get(), "model_hash", m.layout.model_hash);
  h5::Id lcpl = h5::create_plist(H5P_LINK_CREATE);
  h5::check(H5Pset_create_intermediate_group(lcpl.get(), 1), "H5Pset_create_intermediate_group");

  // Each distinct box of a tensor maps to the first shard holding it (replicas add nothing).
  std::map<std::string_view, std::vector<std::pair<const SliceRecord*, int>>> sources;
  for (const ShardRecord& sh : m.shards)
    for (const SliceRecord& sl : sh.slices) {
      auto& v = sources[sl.tensor];
      const bool dup = std::any_of(v.begin(), v.end(), [&](const auto& p) {
        return p.first->offset == sl.offset && p.first->shape == sl.shape;
      });
      if (!dup && element_count(sl.shape) > 0) v.emplace_back(&sl, sh.rank);
    }

  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const TensorInfo& t : m.tensors) {
    h5::Id vspace = h5::simple_space(t.shape);
    h5::Id dcpl = h5::create_plist(H5P_DATASET_CREATE);
    h5::check(H5Pset_fill_value(dcpl.get(), H5T_NATIVE_FLOAT, &nan), "H5Pset_fill_value");
    for (const auto& [slice, rank] : sources[t.name]) {
      h5::select_box(vspace.get(), slice->offset, slice->shape);
      h5::Id src_space = h5::simple_space(slice->shape);
      h5::check(H5Pset_virtual(dcpl.get(), vspace.get(), shard_file_name(rank).c_str(), dataset_path(t.name).c_str(),
                               src_space.get()),
                "cannot map tensor '" + t.name + "' to " + shard_file_name(rank));
    }
    h5::check(H5Sselect_all(vspace.get()), "H5Sselect_all");
    // A tensor with no elements has no sources: a plain empty dataset stands for it.
    h5::Id dset = h5::checked(H5Dcreate2(file.get(), dataset_path(t.name).c_str(), H5T_IEEE_F32LE, vspace.get(),
                                         lcpl.get(), sources[t.name].empty() ? H5P_DEFAULT : dcpl.get(), H5P_DEFAULT),
                              H5Dclose, "cannot create virtual dataset for tensor '" + t.name + "' in " + path);
  }
  h5::check(file.close(), "cannot close (flush) '" + path + "'");
}

std::vector<IndexEntry> read_index_entries(hid_t file) {
  h5::Session session;
  IterState st;
  h5::check(H5Ovisit(file, H5_INDEX_NAME, H5_ITER_INC, collect_dataset, &st), "cannot list the index's datasets");
  std::vector<IndexEntry> out;
  for (const std::string& name : st.names) {
    IndexEntry e;
    e.name = name;
    h5::Id dset = h5::checked(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose, "cannot open dataset '" + name + "'");
    e.shape = dataset_shape(dset.get(), "dataset '" + name + "'");
    h5::Id dcpl = h5::checked(H5Dget_create_plist(dset.get()), H5Pclose, "H5Dget_create_plist");
    for (const auto& [file_name, dset_name] : virtual_sources(dcpl.get())) e.sources.push_back(file_name + ":" + dset_name);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace detail

std::vector<IndexEntry> read_index(const std::string& index_file) {
  h5::Session session;
  h5::Id file = h5::open_file(index_file);
  try {
    return detail::read_index_entries(file.get());
  } catch (const std::exception& e) {
    throw std::runtime_error(index_file + ": " + e.what());
  }
}

std::vector<IndexEntry> read_index_image(std::span<const std::uint8_t> bytes) {
  h5::Session session;
  h5::Id file = h5::open_file_image(bytes.data(), bytes.size());
  return detail::read_index_entries(file.get());
}

std::vector<float> read_tensor_via_index(const std::string& path, std::string_view name) {
  h5::Session session;
  const std::string index = (fs::path(path) / detail::kIndexFile).string();
  // HDF5 1.10 can crash on a malformed file (fuzz_index finds overflows in its dataspace
  // decoding): the index is checked against the manifest before HDF5 parses it.
  const Manifest m = detail::read_committed_manifest(path);
  const detail::FileDigest d = detail::hash_file(index);
  if (d.size != m.index.bytes || d.xxh64 != m.index.xxh64)
    throw std::runtime_error("'" + index + "' does not match the manifest (" + std::to_string(d.size) + " bytes, xxh64 " +
                             format_hex64(d.xxh64) + "; the manifest says " + std::to_string(m.index.bytes) +
                             " bytes, " + format_hex64(m.index.xxh64) + ")");
  h5::Id file = h5::open_file(index);
  const std::string where = index + ": tensor '" + std::string(name) + "'";
  const std::string dpath = detail::dataset_path(name);
  if (h5::check(H5Lexists(file.get(), dpath.c_str(), H5P_DEFAULT), where) <= 0)
    throw std::runtime_error(where + ": no such tensor in the index");
  h5::Id dapl = h5::create_plist(H5P_DATASET_ACCESS);
  h5::check(H5Pset_virtual_prefix(dapl.get(), path.c_str()), "H5Pset_virtual_prefix");
  h5::Id dset = h5::checked(H5Dopen2(file.get(), dpath.c_str(), dapl.get()), H5Dclose, where);
  const auto shape = detail::dataset_shape(dset.get(), where);

  // Every source must exist and hold its dataset with the mapped shape; HDF5 would otherwise
  // return the fill value for it without any error. The sources stay open for the read, so
  // HDF5 uses these very files.
  std::vector<h5::Id> open_sources;
  h5::Id dcpl = h5::checked(H5Dget_create_plist(dset.get()), H5Pclose, "H5Dget_create_plist");
  const auto sources = detail::virtual_sources(dcpl.get());
  for (size_t i = 0; i < sources.size(); ++i) {
    const auto& [file_name, dset_name] = sources[i];
    const fs::path src = fs::path(file_name).is_absolute() ? fs::path(file_name) : fs::path(path) / file_name;
    std::error_code ec;
    if (!fs::is_regular_file(src, ec))
      throw std::runtime_error(where + ": source shard '" + src.string() + "' is missing");
    h5::Id sf = h5::open_file(src.string());
    h5::Id sd = h5::checked(H5Dopen2(sf.get(), dset_name.c_str(), H5P_DEFAULT), H5Dclose,
                            where + ": source '" + src.string() + ":" + dset_name + "' is missing");
    h5::Id src_sel = h5::checked(H5Pget_virtual_srcspace(dcpl.get(), i), H5Sclose, "H5Pget_virtual_srcspace");
    if (H5Sget_select_npoints(src_sel.get()) > element_count(detail::dataset_shape(sd.get(), where)))
      throw std::runtime_error(where + ": source '" + src.string() + ":" + dset_name + "' is smaller than mapped");
    open_sources.push_back(std::move(sd));
    open_sources.push_back(std::move(sf));
  }
  std::vector<float> out(static_cast<std::size_t>(element_count(shape)));
  if (!out.empty())
    h5::check(H5Dread(dset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), "cannot read " + where);
  // Belt and braces: the fill value is NaN, so NaNs may be a source HDF5 failed to open after
  // all. Compare with the shards read directly; saved NaNs match, fill values do not.
  if (std::any_of(out.begin(), out.end(), [](float x) { return std::isnan(x); })) {
    const std::vector<float> direct = CheckpointReader(path).read(name);
    for (std::size_t i = 0; i < out.size(); ++i)
      if (std::isnan(out[i]) && !std::isnan(direct[i]))
        throw std::runtime_error(where + ": the virtual dataset returned fill values at element " + std::to_string(i) +
                                 " (HDF5 could not open a source file)");
  }
  return out;
}

}  // namespace duet::ckpt
