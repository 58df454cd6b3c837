// RAII, error text and attribute helpers over the HDF5 C API.
#include "checkpoint/h5.h"

#include <cstring>
#include <stdexcept>

namespace duet::ckpt::h5 {
namespace {

std::recursive_mutex& library_mutex() {
  static std::recursive_mutex m;
  return m;
}

thread_local int session_depth = 0;

herr_t collect(unsigned n, const H5E_error2_t* e, void* data) {
  auto* out = static_cast<std::vector<std::string>*>(data);
  std::string text = e->desc ? e->desc : "";
  if (text.empty()) {
    char msg[256] = "";
    H5Eget_msg(e->min_num, nullptr, msg, sizeof msg);
    text = msg;
  }
  if (!text.empty() && (out->empty() || out->back() != text)) out->push_back(text);
  return 0;
}

}  // namespace

Session::Session() : lock_(library_mutex()) {
  // HDF5 1.10: when H5Fclose fails (a full disk, a file size limit), the file stays registered
  // half-torn-down, and the library's atexit cleanup later crashes closing it. The descriptor is
  // closed all the same, so skipping that cleanup loses nothing: every file here is closed
  // explicitly. H5dont_atexit only works before the library initialises, i.e. here, first.
  static const bool no_atexit = (H5dont_atexit(), true);
  (void)no_atexit;
  if (session_depth++ == 0) {
    outermost_ = true;
    H5Eget_auto2(H5E_DEFAULT, &saved_func_, &saved_data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
}

Session::~Session() {
  if (outermost_) H5Eset_auto2(H5E_DEFAULT, saved_func_, saved_data_);
  --session_depth;
}

std::string error_text() {
  std::vector<std::string> parts;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect, &parts);
  std::string out;
  for (std::size_t i = 0; i < parts.size() && i < 3; ++i) out += (i ? "; " : "") + parts[i];
  if (out.size() > 400) out = out.substr(0, 400) + "...";
  return out.empty() ? "HDF5 call failed" : out;
}

std::int64_t check(std::int64_t status, std::string_view context) {
  if (status < 0) {
    std::string text = error_text();
    H5Eclear2(H5E_DEFAULT);
    throw std::runtime_error(std::string(context) + ": " + text);
  }
  return status;
}

Id checked(hid_t id, Id::Closer closer, std::string_view context) {
  check(id, context);
  return Id(id, closer);
}

Id create_plist(hid_t cls) { return checked(H5Pcreate(cls), H5Pclose, "H5Pcreate"); }

namespace {
Id file_access() {
  Id fapl = create_plist(H5P_FILE_ACCESS);
  check(H5Pset_fapl_sec2(fapl.get()), "H5Pset_fapl_sec2");
  return fapl;
}
}  // namespace

Id create_file(const std::string& path) {
  Id fapl = file_access();
  return checked(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose,
                 "cannot create HDF5 file '" + path + "'");
}

Id open_file(const std::string& path) {
  Id fapl = file_access();
  return checked(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose,
                 "cannot open HDF5 file '" + path + "'");
}

Id open_file_image(const void* data, std::size_t size) {
  Id fapl = create_plist(H5P_FILE_ACCESS);
  check(H5Pset_fapl_core(fapl.get(), 1 << 16, false), "H5Pset_fapl_core");
  check(H5Pset_file_image(fapl.get(), const_cast<void*>(data), size), "H5Pset_file_image");
  return checked(H5Fopen("image.h5", H5F_ACC_RDONLY, fapl.get()), H5Fclose, "cannot open HDF5 file image");
}

std::vector<hsize_t> to_hsize(std::span<const std::int64_t> v) { return {v.begin(), v.end()}; }

Id simple_space(std::span<const std::int64_t> shape) {
  if (shape.empty()) return checked(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate");
  const auto dims = to_hsize(shape);
  return checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose,
                 "H5Screate_simple");
}

void select_box(hid_t space, std::span<const std::int64_t> offset, std::span<const std::int64_t> shape) {
  const auto start = to_hsize(offset), count = to_hsize(shape);
  check(H5Sselect_hyperslab(space, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
        "H5Sselect_hyperslab");
}

void write_attr(hid_t obj, const char* name, std::span<const std::int64_t> values) {
  const hsize_t n = values.size();
  // A zero-length simple dataspace is not allowed for attributes: use a null one then.
  Id space = n ? checked(H5Screate_simple(1, &n, nullptr), H5Sclose, "H5Screate_simple")
               : checked(H5Screate(H5S_NULL), H5Sclose, "H5Screate");
  Id attr = checked(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                    std::string("cannot create attribute '") + name + "'");
  if (n) check(H5Awrite(attr.get(), H5T_NATIVE_INT64, values.data()), std::string("cannot write attribute ") + name);
}

void write_attr(hid_t obj, const char* name, std::int64_t value) {
  Id space = checked(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate");
  Id attr = checked(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                    std::string("cannot create attribute '") + name + "'");
  check(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), std::string("cannot write attribute ") + name);
}

void write_attr(hid_t obj, const char* name, std::string_view value) {
  Id type = checked(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy");
  check(H5Tset_size(type.get(), value.empty() ? 1 : value.size()), "H5Tset_size");
  check(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), "H5Tset_strpad");
  Id space = checked(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate");
  Id attr = checked(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                    std::string("cannot create attribute '") + name + "'");
  std::string buf(value.empty() ? 1 : value.size(), '\0');
  value.copy(buf.data(), value.size());
  check(H5Awrite(attr.get(), type.get(), buf.data()), std::string("cannot write attribute ") + name);
}

bool has_attr(hid_t obj, const char* name) { return check(H5Aexists(obj, name), "H5Aexists") > 0; }

std::vector<std::int64_t> read_attr_ints(hid_t obj, const char* name) {
  Id attr = checked(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, std::string("missing attribute '") + name + "'");
  Id type = checked(H5Aget_type(attr.get()), H5Tclose, "H5Aget_type");
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    throw std::runtime_error(std::string("attribute '") + name + "' is not an integer array");
  Id space = checked(H5Aget_space(attr.get()), H5Sclose, "H5Aget_space");
  const hssize_t n = check(H5Sget_simple_extent_npoints(space.get()), "H5Sget_simple_extent_npoints");
  if (n > (1 << 16)) throw std::runtime_error(std::string("attribute '") + name + "' is implausibly long");
  std::vector<std::int64_t> out(static_cast<std::size_t>(n));
  if (n) check(H5Aread(attr.get(), H5T_NATIVE_INT64, out.data()), std::string("cannot read attribute ") + name);
  return out;
}

std::string read_attr_string(hid_t obj, const char* name) {
  Id attr = checked(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, std::string("missing attribute '") + name + "'");
  Id type = checked(H5Aget_type(attr.get()), H5Tclose, "H5Aget_type");
  if (H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) != 0)
    throw std::runtime_error(std::string("attribute '") + name + "' is not a fixed-length string");
  Id space = checked(H5Aget_space(attr.get()), H5Sclose, "H5Aget_space");
  if (check(H5Sget_simple_extent_npoints(space.get()), "H5Sget_simple_extent_npoints") != 1)
    throw std::runtime_error(std::string("attribute '") + name + "' is not a single string");
  const std::size_t size = H5Tget_size(type.get());
  if (size == 0 || size > (1u << 20)) throw std::runtime_error(std::string("attribute '") + name + "' has a bad size");
  std::string buf(size, '\0');
  check(H5Aread(attr.get(), type.get(), buf.data()), std::string("cannot read attribute ") + name);
  buf.resize(std::strlen(buf.c_str()));
  return buf;
}

}  // namespace duet::ckpt::h5

namespace duet::ckpt {

void init_before_mpi() {
  // Parallel HDF5 that starts after MPI_Init hangs its cleanup on MPI_COMM_SELF, so
  // MPI_Finalize runs it — and it crashes on a file whose close failed (see Session).
  // Starting the library before MPI_Init, with atexit cleanup off, avoids both.
  h5::Session session;
  H5open();
}

}  // namespace duet::ckpt
